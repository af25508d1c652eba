/* adaptinf: C client for adaptinfd's local API v1 (docs/protocols.md, docs/c-client.md).
 *
 * One adaptinf_client is one ZeroMQ DEALER connection: use it from one thread at a
 * time (open one per thread). Every call has the client's timeout; after a timeout the
 * connection is rebuilt, so a late reply can never answer a later request.
 *
 * Errors are an adaptinf_code and a message: the daemon's codes (INVALID_ARG, ...) and
 * this library's own (TIMEOUT, TRANSPORT, PROTOCOL, NO_MEMORY).
 */
#ifndef ADAPTINF_H
#define ADAPTINF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ADAPTINF_MAX_RANK 8
#define ADAPTINF_MAX_OUTPUTS 16

typedef enum {
    ADAPTINF_OK = 0,
    /* the daemon's codes (core/api_protocol.py) */
    ADAPTINF_INVALID_ARG,
    ADAPTINF_NOT_FOUND,
    ADAPTINF_UNAVAILABLE,
    ADAPTINF_DEADLINE_EXCEEDED,
    ADAPTINF_RESOURCE_EXHAUSTED,
    ADAPTINF_TOO_LARGE,
    ADAPTINF_VERSION_MISMATCH,
    /* this library's */
    ADAPTINF_TIMEOUT,         /* no reply within the client's timeout */
    ADAPTINF_TRANSPORT,       /* ZeroMQ could not connect, send or receive */
    ADAPTINF_PROTOCOL,        /* a reply this library cannot read, or a code it does not know */
    ADAPTINF_NO_MEMORY
} adaptinf_code;

typedef struct {
    adaptinf_code code;
    char message[512];
} adaptinf_error;

/* A tensor: C order (row-major), little-endian. In a result, data points into the result. */
typedef struct {
    char name[64];
    char dtype[16];           /* "uint8", "int8", "float16", "float32", "int64", ... */
    int rank;
    int64_t shape[ADAPTINF_MAX_RANK];
    const void *data;
    size_t nbytes;
} adaptinf_tensor;

typedef struct {
    const char *model;        /* NULL: the daemon's default model */
    const char *policy;       /* NULL: its default policy ("split", "mobile-only", "cloud-only", ...) */
    const char *goal;         /* NULL, "latency" or "energy" */
    const char *color;        /* a camera frame's channel order: NULL or "RGB", or "BGR" */
    double deadline_ms;       /* <= 0: none */
    int priority;             /* 0..255 */
} adaptinf_infer_options;

typedef struct {
    int has_label;            /* the model is a classifier: label, class_name, confidence, scores */
    int label;
    char class_name[128];
    double confidence;
    const float *scores;      /* class probabilities, n_scores of them */
    size_t n_scores;
    char placement[32];       /* device, cloud, split, ... */
    char partition[64];       /* mobile-only, cloud-only, a split point */
    int fallback;             /* the cloud failed and the device answered */
    double latency_ms;        /* receipt to answer, in the daemon */
    double energy_j;
    size_t n_outputs;         /* the model's named outputs */
    adaptinf_tensor outputs[ADAPTINF_MAX_OUTPUTS];
    void *_reply;             /* owned: released by adaptinf_result_free */
} adaptinf_result;

typedef struct adaptinf_client adaptinf_client;

/* Connect (ZeroMQ connects lazily: an absent daemon shows as TIMEOUT on the first call). */
adaptinf_client *adaptinf_connect(const char *endpoint, int timeout_ms, adaptinf_error *err);
void adaptinf_close(adaptinf_client *client);

/* hello: the daemon's version string into version (NUL-terminated, truncated to len). */
adaptinf_code adaptinf_hello(adaptinf_client *client, char *version, size_t len, adaptinf_error *err);
adaptinf_code adaptinf_health(adaptinf_client *client, int *live, int *ready, adaptinf_error *err);

/* One frame: the model's exact tensor, or a camera frame uint8 [H, W, 3] for a bundle with
 * preprocessing. options may be NULL. Free the result with adaptinf_result_free. */
adaptinf_code adaptinf_infer(adaptinf_client *client, const char *dtype, const int64_t *shape, int rank,
                             const void *data, size_t nbytes, const adaptinf_infer_options *options,
                             adaptinf_result *result, adaptinf_error *err);
void adaptinf_result_free(adaptinf_result *result);

/* models and status: the reply, printed as text (JSON-like); free() it. */
adaptinf_code adaptinf_models(adaptinf_client *client, char **text, adaptinf_error *err);
adaptinf_code adaptinf_status(adaptinf_client *client, char **text, adaptinf_error *err);

const char *adaptinf_code_name(adaptinf_code code);
const char *adaptinf_version(void);

#ifdef __cplusplus
}
#endif
#endif
