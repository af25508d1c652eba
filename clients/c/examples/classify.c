/* classify: send a PPM image (P6) to adaptinfd and print the answer.
 *   cc classify.c -o classify $(pkg-config --cflags --libs adaptinf)
 *   ./classify photo.ppm [ipc:///run/adaptinfd/api.sock]                              */
#include <adaptinf.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s IMAGE.ppm [ENDPOINT]\n", argv[0]); return 2; }
    FILE *f = fopen(argv[1], "rb");
    int w, h, maxval;
    if (!f || fscanf(f, "P6 %d %d %d", &w, &h, &maxval) != 3 || maxval != 255 || fgetc(f) == EOF) {
        fprintf(stderr, "%s: not a binary 8-bit PPM (P6)\n", argv[1]); return 2;
    }
    size_t nbytes = (size_t)w * h * 3;
    unsigned char *pixels = malloc(nbytes);
    if (!pixels || fread(pixels, 1, nbytes, f) != nbytes) { fprintf(stderr, "%s: short file\n", argv[1]); return 2; }
    fclose(f);

    adaptinf_error err;
    adaptinf_client *c = adaptinf_connect(argc > 2 ? argv[2] : "ipc:///run/adaptinfd/api.sock", 5000, &err);
    if (!c) { fprintf(stderr, "%s\n", err.message); return 1; }
    int64_t shape[3] = {h, w, 3};                        /* a camera frame: H x W x 3, RGB */
    adaptinf_result r;
    if (adaptinf_infer(c, "uint8", shape, 3, pixels, nbytes, NULL, &r, &err) != ADAPTINF_OK) {
        fprintf(stderr, "%s: %s\n", adaptinf_code_name(err.code), err.message);
        adaptinf_close(c); return 1;
    }
    if (r.has_label) printf("%s (%.1f%%)", r.class_name, 100 * r.confidence);
    else printf("%zu outputs, the first %s", r.n_outputs, r.outputs[0].name);
    printf(" on %s%s, %.1f ms, %.1f mJ\n", r.partition, r.fallback ? " (fallback)" : "", r.latency_ms,
           1e3 * r.energy_j);
    adaptinf_result_free(&r);
    adaptinf_close(c);
    free(pixels);
    return 0;
}
