/* adaptinf C client: local API v1 over a ZeroMQ DEALER, msgpack headers (docs/protocols.md). */
#define _POSIX_C_SOURCE 200809L
#include "adaptinf.h"

#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define ADAPTINF_LIB_VERSION "0.1.0"
#define MAX_REPLY_FRAMES 32

struct adaptinf_client {
    void *context;
    void *socket;
    char *endpoint;
    int timeout_ms;
    uint64_t next_id;
};

/* A reply: its header unpacked, and its buffers (zmq messages, kept alive here). */
typedef struct {
    msgpack_unpacked header;
    zmq_msg_t frames[MAX_REPLY_FRAMES];
    size_t n_frames;                 /* frames[0] is the header */
} reply_t;

static const char *CODE_NAMES[] = {"OK", "INVALID_ARG", "NOT_FOUND", "UNAVAILABLE", "DEADLINE_EXCEEDED",
                                   "RESOURCE_EXHAUSTED", "TOO_LARGE", "VERSION_MISMATCH", "TIMEOUT",
                                   "TRANSPORT", "PROTOCOL", "NO_MEMORY"};

const char *adaptinf_code_name(adaptinf_code code) {
    if ((int)code < 0 || (size_t)code >= sizeof CODE_NAMES / sizeof *CODE_NAMES) return "?";
    return CODE_NAMES[code];
}

const char *adaptinf_version(void) { return ADAPTINF_LIB_VERSION; }

static adaptinf_code fail(adaptinf_error *err, adaptinf_code code, const char *fmt, ...) {
    if (err) {
        va_list args;
        va_start(args, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, args);
        va_end(args);
    }
    return code;
}

static adaptinf_code ok(adaptinf_error *err) {
    if (err) {
        err->code = ADAPTINF_OK;
        err->message[0] = '\0';
    }
    return ADAPTINF_OK;
}

static int open_socket(adaptinf_client *c) {
    int linger = 0;
    c->socket = zmq_socket(c->context, ZMQ_DEALER);
    if (!c->socket) return -1;
    zmq_setsockopt(c->socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->socket, ZMQ_RCVTIMEO, &c->timeout_ms, sizeof c->timeout_ms);
    return zmq_connect(c->socket, c->endpoint);
}

adaptinf_client *adaptinf_connect(const char *endpoint, int timeout_ms, adaptinf_error *err) {
    adaptinf_client *c = calloc(1, sizeof *c);
    if (!c) {
        fail(err, ADAPTINF_NO_MEMORY, "out of memory");
        return NULL;
    }
    c->endpoint = strdup(endpoint ? endpoint : "ipc:///run/adaptinfd/api.sock");
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    c->next_id = 1;
    c->context = zmq_ctx_new();
    if (!c->endpoint || !c->context || open_socket(c) != 0) {
        fail(err, ADAPTINF_TRANSPORT, "cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        adaptinf_close(c);
        return NULL;
    }
    ok(err);
    return c;
}

void adaptinf_close(adaptinf_client *c) {
    if (!c) return;
    if (c->socket) zmq_close(c->socket);
    if (c->context) zmq_ctx_term(c->context);
    free(c->endpoint);
    free(c);
}

/* ---- msgpack helpers ------------------------------------------------------------------ */
static void pack_cstr(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static const msgpack_object *find(const msgpack_object *map, const char *key) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, key, n) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static int get_number(const msgpack_object *o, double *out) {
    if (!o) return 0;
    switch (o->type) {
        case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; return 1;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; return 1;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; return 1;
        default: return 0;
    }
}

static void get_str(const msgpack_object *o, char *out, size_t len) {
    out[0] = '\0';
    if (o && o->type == MSGPACK_OBJECT_STR && len > 0) {
        size_t n = o->via.str.size < len - 1 ? o->via.str.size : len - 1;
        memcpy(out, o->via.str.ptr, n);
        out[n] = '\0';
    }
}

static adaptinf_code code_of(const msgpack_object *o) {
    char name[32];
    get_str(o, name, sizeof name);
    for (int i = 0; i <= ADAPTINF_VERSION_MISMATCH; i++)
        if (strcmp(name, CODE_NAMES[i]) == 0) return (adaptinf_code)i;
    return ADAPTINF_PROTOCOL;
}

static void reply_free(reply_t *r) {
    msgpack_unpacked_destroy(&r->header);
    for (size_t i = 0; i < r->n_frames; i++) zmq_msg_close(&r->frames[i]);
    r->n_frames = 0;
}

/* Send a request (header body packed by `body`, then buffers) and receive its reply. */
typedef void (*body_fn)(msgpack_packer *pk, const void *arg, int *extra_keys, int count_only);

static adaptinf_code roundtrip(adaptinf_client *c, const char *op, body_fn body, const void *arg,
                               const void *buffer, size_t nbytes, reply_t *reply, adaptinf_error *err) {
    uint64_t id = c->next_id++;
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    int extra = 0;
    if (body) body(NULL, arg, &extra, 1);
    msgpack_pack_map(&pk, 3 + extra);
    pack_cstr(&pk, "v");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 0);
    pack_cstr(&pk, "op");
    pack_cstr(&pk, op);
    pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, id);
    if (body) body(&pk, arg, &extra, 0);
    int sent = zmq_send(c->socket, sbuf.data, sbuf.size, buffer ? ZMQ_SNDMORE : 0);
    if (sent >= 0 && buffer) sent = zmq_send(c->socket, buffer, nbytes, 0);
    msgpack_sbuffer_destroy(&sbuf);
    if (sent < 0) return fail(err, ADAPTINF_TRANSPORT, "send to %s: %s", c->endpoint, zmq_strerror(zmq_errno()));

    for (;;) {   /* skip late replies to earlier, timed-out requests */
        memset(reply, 0, sizeof *reply);
        msgpack_unpacked_init(&reply->header);
        int more = 1;
        while (more) {
            zmq_msg_t scratch;      /* frames past MAX_REPLY_FRAMES are read and dropped */
            zmq_msg_t *msg = reply->n_frames < MAX_REPLY_FRAMES ? &reply->frames[reply->n_frames] : &scratch;
            zmq_msg_init(msg);
            if (zmq_msg_recv(msg, c->socket, 0) < 0) {
                int timed_out = zmq_errno() == EAGAIN;
                zmq_msg_close(msg);
                reply_free(reply);
                /* rebuild the socket: its late reply must not answer the next request */
                zmq_close(c->socket);
                open_socket(c);
                return timed_out ? fail(err, ADAPTINF_TIMEOUT, "no reply to %s within %d ms from %s", op,
                                        c->timeout_ms, c->endpoint)
                                 : fail(err, ADAPTINF_TRANSPORT, "receive: %s", zmq_strerror(zmq_errno()));
            }
            more = zmq_msg_more(msg);
            if (msg == &scratch) zmq_msg_close(msg);
            else reply->n_frames++;
        }
        size_t off = 0;
        if (msgpack_unpack_next(&reply->header, zmq_msg_data(&reply->frames[0]), zmq_msg_size(&reply->frames[0]),
                                &off) != MSGPACK_UNPACK_SUCCESS ||
            reply->header.data.type != MSGPACK_OBJECT_MAP) {
            reply_free(reply);
            return fail(err, ADAPTINF_PROTOCOL, "a reply header that is not a msgpack map");
        }
        double got;
        if (get_number(find(&reply->header.data, "id"), &got) && (uint64_t)got == id) break;
        reply_free(reply);
    }
    const msgpack_object *h = &reply->header.data;
    const msgpack_object *okv = find(h, "ok");
    if (!okv || okv->type != MSGPACK_OBJECT_BOOLEAN || !okv->via.boolean) {
        char message[400];
        get_str(find(h, "message"), message, sizeof message);
        adaptinf_code code = code_of(find(h, "code"));
        reply_free(reply);
        return fail(err, code, "%s", message[0] ? message : adaptinf_code_name(code));
    }
    return ok(err);
}

/* ---- operations ------------------------------------------------------------------------- */
adaptinf_code adaptinf_hello(adaptinf_client *c, char *version, size_t len, adaptinf_error *err) {
    reply_t r;
    adaptinf_code code = roundtrip(c, "hello", NULL, NULL, NULL, 0, &r, err);
    if (code != ADAPTINF_OK) return code;
    if (version && len) get_str(find(&r.header.data, "version"), version, len);
    reply_free(&r);
    return ADAPTINF_OK;
}

adaptinf_code adaptinf_health(adaptinf_client *c, int *live, int *ready, adaptinf_error *err) {
    reply_t r;
    adaptinf_code code = roundtrip(c, "health", NULL, NULL, NULL, 0, &r, err);
    if (code != ADAPTINF_OK) return code;
    const msgpack_object *l = find(&r.header.data, "live"), *y = find(&r.header.data, "ready");
    if (live) *live = l && l->type == MSGPACK_OBJECT_BOOLEAN && l->via.boolean;
    if (ready) *ready = y && y->type == MSGPACK_OBJECT_BOOLEAN && y->via.boolean;
    reply_free(&r);
    return ADAPTINF_OK;
}

static adaptinf_code printed(adaptinf_client *c, const char *op, char **text, adaptinf_error *err) {
    reply_t r;
    adaptinf_code code = roundtrip(c, op, NULL, NULL, NULL, 0, &r, err);
    if (code != ADAPTINF_OK) return code;
    size_t size = 4096;
    for (;;) {
        char *buf = malloc(size);
        if (!buf) {
            reply_free(&r);
            return fail(err, ADAPTINF_NO_MEMORY, "out of memory");
        }
        int n = msgpack_object_print_buffer(buf, size, r.header.data);
        if (n >= 0 && (size_t)n < size - 1) {
            *text = buf;
            reply_free(&r);
            return ADAPTINF_OK;
        }
        free(buf);
        size *= 4;
        if (size > (64u << 20)) {
            reply_free(&r);
            return fail(err, ADAPTINF_PROTOCOL, "a %s reply too large to print", op);
        }
    }
}

adaptinf_code adaptinf_models(adaptinf_client *c, char **text, adaptinf_error *err) {
    return printed(c, "models", text, err);
}

adaptinf_code adaptinf_status(adaptinf_client *c, char **text, adaptinf_error *err) {
    return printed(c, "status", text, err);
}

typedef struct {
    const char *dtype;
    const int64_t *shape;
    int rank;
    const adaptinf_infer_options *options;
} infer_args;

static void infer_body(msgpack_packer *pk, const void *arg, int *extra, int count_only) {
    const infer_args *a = arg;
    const adaptinf_infer_options *o = a->options;
    const char *names[] = {"model", "policy", "goal", "color"};
    const char *values[] = {o ? o->model : NULL, o ? o->policy : NULL, o ? o->goal : NULL, o ? o->color : NULL};
    if (count_only) {
        *extra = 1 + (o && o->deadline_ms > 0) + (o && o->priority > 0);
        for (int i = 0; i < 4; i++) *extra += values[i] != NULL;
        return;
    }
    pack_cstr(pk, "tensor");
    msgpack_pack_map(pk, 2);
    pack_cstr(pk, "dtype");
    pack_cstr(pk, a->dtype);
    pack_cstr(pk, "shape");
    msgpack_pack_array(pk, (size_t)a->rank);
    for (int i = 0; i < a->rank; i++) msgpack_pack_int64(pk, a->shape[i]);
    for (int i = 0; i < 4; i++) {
        if (values[i]) {
            pack_cstr(pk, names[i]);
            pack_cstr(pk, values[i]);
        }
    }
    if (o && o->deadline_ms > 0) {
        pack_cstr(pk, "deadline_ms");
        msgpack_pack_double(pk, o->deadline_ms);
    }
    if (o && o->priority > 0) {
        pack_cstr(pk, "priority");
        msgpack_pack_int(pk, o->priority);
    }
}

static int tensor_of(const msgpack_object *desc, const reply_t *r, adaptinf_tensor *t) {
    memset(t, 0, sizeof *t);
    get_str(find(desc, "name"), t->name, sizeof t->name);
    get_str(find(desc, "dtype"), t->dtype, sizeof t->dtype);
    const msgpack_object *shape = find(desc, "shape");
    double index = 0;
    if (!shape || shape->type != MSGPACK_OBJECT_ARRAY || shape->via.array.size > ADAPTINF_MAX_RANK) return 0;
    t->rank = (int)shape->via.array.size;
    for (int i = 0; i < t->rank; i++) {
        double d;
        if (!get_number(&shape->via.array.ptr[i], &d)) return 0;
        t->shape[i] = (int64_t)d;
    }
    if (!get_number(find(desc, "buffer"), &index)) index = 0;
    if (index < 0 || (size_t)index + 1 >= r->n_frames) return 0;
    zmq_msg_t *frame = (zmq_msg_t *)&r->frames[(size_t)index + 1];
    t->data = zmq_msg_data(frame);
    t->nbytes = zmq_msg_size(frame);
    return 1;
}

adaptinf_code adaptinf_infer(adaptinf_client *c, const char *dtype, const int64_t *shape, int rank,
                             const void *data, size_t nbytes, const adaptinf_infer_options *options,
                             adaptinf_result *result, adaptinf_error *err) {
    memset(result, 0, sizeof *result);
    if (!dtype || !shape || rank < 1 || rank > ADAPTINF_MAX_RANK || !data)
        return fail(err, ADAPTINF_INVALID_ARG, "infer needs a dtype, a shape of 1..%d dimensions and data",
                    ADAPTINF_MAX_RANK);
    reply_t *r = malloc(sizeof *r);
    if (!r) return fail(err, ADAPTINF_NO_MEMORY, "out of memory");
    infer_args args = {dtype, shape, rank, options};
    adaptinf_code code = roundtrip(c, "infer", infer_body, &args, data, nbytes, r, err);
    if (code != ADAPTINF_OK) {
        free(r);
        return code;
    }
    const msgpack_object *h = &r->header.data;
    double number;
    result->_reply = r;
    if (get_number(find(h, "label"), &number)) {
        result->has_label = 1;
        result->label = (int)number;
        get_str(find(h, "class"), result->class_name, sizeof result->class_name);
        get_number(find(h, "confidence"), &result->confidence);
        adaptinf_tensor scores;
        if (tensor_of(find(h, "scores"), r, &scores)) {
            result->scores = scores.data;
            result->n_scores = scores.nbytes / sizeof(float);
        }
    }
    const msgpack_object *served = find(h, "served_by");
    get_str(find(served, "placement"), result->placement, sizeof result->placement);
    get_str(find(served, "partition"), result->partition, sizeof result->partition);
    const msgpack_object *fb = find(served, "fallback");
    result->fallback = fb && fb->type == MSGPACK_OBJECT_BOOLEAN && fb->via.boolean;
    get_number(find(find(h, "latency_ms"), "total"), &result->latency_ms);
    get_number(find(h, "energy_j"), &result->energy_j);
    const msgpack_object *outputs = find(h, "outputs");
    if (outputs && outputs->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < outputs->via.array.size && i < ADAPTINF_MAX_OUTPUTS; i++) {
            if (!tensor_of(&outputs->via.array.ptr[i], r, &result->outputs[result->n_outputs])) {
                adaptinf_result_free(result);
                return fail(err, ADAPTINF_PROTOCOL, "a reply output without its buffer");
            }
            result->n_outputs++;
        }
    }
    return ADAPTINF_OK;
}

void adaptinf_result_free(adaptinf_result *result) {
    if (result && result->_reply) {
        reply_free(result->_reply);
        free(result->_reply);
        result->_reply = NULL;
    }
}
