/* The C client against a real adaptinfd (started by tests/test_c_client.py).
 *   test_client ENDPOINT FRAME.bin H W           (FRAME.bin: the bundle's uint8 [1, H, W, 3] input)
 * Each check prints "ok - ..." or "not ok - ..."; the closing line counts them. */
#include <adaptinf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
#define CHECK(cond, ...) do { if (cond) { passed++; printf("ok - "); } else { failed++; printf("not ok - "); } \
                              printf(__VA_ARGS__); printf("\n"); } while (0)

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s ENDPOINT FRAME.bin H W\n", argv[0]); return 2; }
    int h = atoi(argv[3]), w = atoi(argv[4]);
    size_t nbytes = (size_t)h * w * 3;
    unsigned char *frame = malloc(nbytes);
    FILE *f = fopen(argv[2], "rb");
    if (!f || fread(frame, 1, nbytes, f) != nbytes) { fprintf(stderr, "cannot read %s\n", argv[2]); return 2; }
    fclose(f);

    adaptinf_error err;
    adaptinf_client *c = adaptinf_connect(argv[1], 10000, &err);
    CHECK(c != NULL, "connect: %s", c ? "" : err.message);
    if (!c) return 1;
    char version[32];
    CHECK(adaptinf_hello(c, version, sizeof version, &err) == ADAPTINF_OK && version[0], "hello: daemon %s",
          version);
    int live = 0, ready = 0;
    CHECK(adaptinf_health(c, &live, &ready, &err) == ADAPTINF_OK && live && ready, "health: live and ready");

    int64_t exact[4] = {1, h, w, 3};
    adaptinf_infer_options device = {.policy = "mobile-only"};
    adaptinf_result r;
    adaptinf_code code = adaptinf_infer(c, "uint8", exact, 4, frame, nbytes, &device, &r, &err);
    CHECK(code == ADAPTINF_OK && r.has_label && r.n_scores > 1 && r.latency_ms > 0,
          "infer: label %d (%s) confidence %.3f on %s", r.label, r.class_name, r.confidence, r.partition);
    int label = r.label;
    float best = -1;
    for (size_t i = 0; i < r.n_scores; i++) if (r.scores[i] > best) best = r.scores[i];
    CHECK(code == ADAPTINF_OK && r.scores[label] == best, "scores: the label is the most probable class");
    CHECK(code == ADAPTINF_OK && r.n_outputs == 1 && r.outputs[0].rank == 2 && r.outputs[0].nbytes == 4 * r.n_scores,
          "outputs: %zu named tensor(s), %s", r.n_outputs, r.n_outputs ? r.outputs[0].name : "");
    CHECK(strcmp(r.partition, "mobile-only") == 0 && !r.fallback, "served by the pinned policy");
    adaptinf_result_free(&r);

    adaptinf_infer_options deadline = {.policy = "mobile-only", .deadline_ms = 5000};
    CHECK(adaptinf_infer(c, "uint8", exact, 4, frame, nbytes, &deadline, &r, &err) == ADAPTINF_OK && r.label == label,
          "infer with a deadline: the same answer");
    adaptinf_result_free(&r);

    /* the same pixels as a camera frame, BGR: the daemon preprocesses it */
    unsigned char *bgr = malloc(nbytes);
    for (size_t i = 0; i < nbytes; i += 3) { bgr[i] = frame[i + 2]; bgr[i + 1] = frame[i + 1]; bgr[i + 2] = frame[i]; }
    int64_t camera[3] = {h, w, 3};
    adaptinf_infer_options bgr_options = {.policy = "mobile-only", .color = "BGR"};
    CHECK(adaptinf_infer(c, "uint8", camera, 3, bgr, nbytes, &bgr_options, &r, &err) == ADAPTINF_OK && r.label == label,
          "a BGR camera frame: the same answer");
    adaptinf_result_free(&r);

    code = adaptinf_infer(c, "float32", exact, 4, frame, nbytes, NULL, &r, &err);
    CHECK(code == ADAPTINF_INVALID_ARG && strstr(err.message, "bytes") != NULL, "a wrong dtype: %s: %s",
          adaptinf_code_name(code), err.message);
    adaptinf_infer_options unknown = {.model = "no-such-model"};
    code = adaptinf_infer(c, "uint8", exact, 4, frame, nbytes, &unknown, &r, &err);
    CHECK(code == ADAPTINF_NOT_FOUND, "an unknown model: %s", adaptinf_code_name(code));

    char *text = NULL;
    CHECK(adaptinf_models(c, &text, &err) == ADAPTINF_OK && strstr(text, "partitions") != NULL, "models");
    free(text);
    text = NULL;
    CHECK(adaptinf_status(c, &text, &err) == ADAPTINF_OK && strstr(text, "link") != NULL, "status");
    free(text);
    adaptinf_close(c);

    adaptinf_client *nobody = adaptinf_connect("ipc:///nonexistent/adaptinf.sock", 300, &err);
    code = nobody ? adaptinf_health(nobody, &live, &ready, &err) : err.code;
    CHECK(code == ADAPTINF_TIMEOUT, "no daemon: %s after 300 ms", adaptinf_code_name(code));
    adaptinf_close(nobody);
    free(frame);
    free(bgr);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
