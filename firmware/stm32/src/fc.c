/* FC kernels: int8 with int32 accumulators (SMLAD on the M4's DSP extension) and float32. */
#include "fc.h"

#include <math.h>
#include <string.h>
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#endif

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static float rdf(const uint8_t *p) { float f; memcpy(&f, p, sizeof f); return f; }
static size_t pad4(size_t n) { return (n + 3u) & ~(size_t)3u; }

fc_status fc_parse(const uint8_t *blob, size_t length, fc_model *model)
{
    if (length < 16 || (uint32_t)(blob[0] | blob[1] << 8 | blob[2] << 16 | (uint32_t)blob[3] << 24) != FC_MAGIC) {
        return FC_ERR_MAGIC;
    }
    if (blob[4] != FC_VERSION) {
        return FC_ERR_VERSION;
    }
    model->dtype = blob[5] == 0 ? FC_INT8 : FC_F32;
    model->layers = blob[6];
    model->input_dim = rd16(blob + 8);
    model->classes = rd16(blob + 10);
    model->input_scale = rdf(blob + 12);
    if (blob[5] > 1 || model->layers == 0 || model->layers > FC_MAX_LAYERS || model->input_dim == 0) {
        return FC_ERR_SHAPE;
    }
    if (model->input_dim > FC_MAX_INPUT) {
        return FC_ERR_TOO_MANY_INPUTS;
    }
    size_t at = 16, element = model->dtype == FC_INT8 ? 1u : 4u;
    uint16_t width = model->input_dim;
    for (uint8_t i = 0; i < model->layers; i++) {
        fc_layer *l = &model->layer[i];
        if (at + 12 > length) {
            return FC_ERR_SIZE;
        }
        l->in = rd16(blob + at);
        l->out = rd16(blob + at + 2);
        l->relu = blob[at + 4];
        l->requant = rdf(blob + at + 8);
        at += 12;
        if (l->out > FC_MAX_WIDTH) {
            return FC_ERR_TOO_WIDE;
        }
        if (l->in != width || l->out == 0) {   /* width: the input, then the previous layer's outputs */
            return FC_ERR_SHAPE;
        }
        size_t wbytes = pad4((size_t)l->in * l->out * element), bbytes = (size_t)l->out * 4u;
        if (at + wbytes + bbytes > length) {
            return FC_ERR_SIZE;
        }
        l->weights = blob + at;
        l->bias = blob + at + wbytes;
        at += wbytes + bbytes;
        width = l->out;
    }
    return width == model->classes ? FC_OK : FC_ERR_SHAPE;
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static uint32_t load4(const int8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
/* SXTB16 of bytes 1 and 3 in one instruction (GCC 12 does not fold a rotate into it; CMSIS's
 * __SXTB16_RORn is the same inline assembly) */
static inline int32_t sxtb16_ror8(uint32_t v)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/*
 * Two rows at a time, four columns per step (the shape of CMSIS-NN's arm_nn_vec_mat_mult_t_s8,
 * written here): x is loaded and sign-extended once for both rows; SXTB16 takes bytes 0 and 2,
 * SXTB16 with ROR #8 bytes 1 and 3, and SMLAD does two 16x16 MACs. 8 MACs per 3 loads.
 */
static void dot2_s8(const int8_t *w0, const int8_t *w1, const int8_t *x, uint32_t n, int32_t *acc0, int32_t *acc1)
{
    int32_t a0 = 0, a1 = 0;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t xv = load4(x + i), v0 = load4(w0 + i), v1 = load4(w1 + i);
        int32_t xe = __sxtb16(xv), xo = sxtb16_ror8(xv);
        a0 = __smlad(__sxtb16(v0), xe, a0);
        a0 = __smlad(sxtb16_ror8(v0), xo, a0);
        a1 = __smlad(__sxtb16(v1), xe, a1);
        a1 = __smlad(sxtb16_ror8(v1), xo, a1);
    }
    for (; i < n; i++) {
        a0 += (int32_t)w0[i] * x[i];
        a1 += (int32_t)w1[i] * x[i];
    }
    *acc0 = a0;
    *acc1 = a1;
}
#endif

static int32_t dot_s8(const int8_t *w, const int8_t *x, uint32_t n)
{
    int32_t acc = 0;
    for (uint32_t i = 0; i < n; i++) {
        acc += (int32_t)w[i] * (int32_t)x[i];
    }
    return acc;
}

static void requant_store(const fc_layer *layer, uint32_t o, int32_t acc, int8_t *y, float *logits)
{
    if (logits) {
        logits[o] = (float)acc * layer->requant;
    } else {
        float v = rintf((float)acc * layer->requant);
        if (layer->relu && v < 0.0f) v = 0.0f;
        y[o] = (int8_t)(v > 127.0f ? 127 : v < -128.0f ? -128 : (int)v);
    }
}

fc_status fc_layer_s8(const fc_layer *layer, const int8_t *x, int8_t *y, float *logits)
{
    const int8_t *w = (const int8_t *)layer->weights;
    const uint8_t *b = (const uint8_t *)layer->bias;
    uint32_t in = layer->in, o = 0;
    int32_t bias[2];
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    for (; o + 2 <= layer->out; o += 2) {
        int32_t acc0, acc1;
        dot2_s8(w + o * in, w + (o + 1) * in, x, in, &acc0, &acc1);
        memcpy(bias, b + 4u * o, 8);
        requant_store(layer, o, acc0 + bias[0], y, logits);
        requant_store(layer, o + 1, acc1 + bias[1], y, logits);
    }
#endif
    for (; o < layer->out; o++) {
        memcpy(bias, b + 4u * o, 4);
        requant_store(layer, o, dot_s8(w + o * in, x, in) + bias[0], y, logits);
    }
    return FC_OK;
}

static void layer_f32(const fc_layer *layer, const float *x, float *y)
{
    const uint8_t *w = (const uint8_t *)layer->weights, *b = (const uint8_t *)layer->bias;
    for (uint16_t o = 0; o < layer->out; o++) {
        float acc = rdf(b + 4u * o);
        for (uint16_t i = 0; i < layer->in; i++) {
            acc += rdf(w + 4u * ((size_t)o * layer->in + i)) * x[i];
        }
        y[o] = layer->relu && acc < 0.0f ? 0.0f : acc;
    }
}

fc_status fc_run(const fc_model *model, const float *input, float *logits)
{
    /* The first layer reads the input (up to FC_MAX_INPUT features); the activations between
     * layers (up to FC_MAX_WIDTH) alternate between two buffers. */
    if (model->dtype == FC_INT8) {
        static int8_t x[FC_MAX_INPUT];   /* the quantised input: static, it is 1 KB */
        int8_t a[FC_MAX_WIDTH], b[FC_MAX_WIDTH];
        for (uint16_t i = 0; i < model->input_dim; i++) {
            float v = rintf(input[i] / model->input_scale);
            x[i] = (int8_t)(v > 127.0f ? 127 : v < -128.0f ? -128 : (int)v);
        }
        const int8_t *in = x;
        for (uint8_t l = 0; l < model->layers; l++) {
            int8_t *out = l % 2 ? b : a;
            fc_layer_s8(&model->layer[l], in, out, l + 1 == model->layers ? logits : NULL);
            in = out;
        }
    } else {
        float a[FC_MAX_WIDTH], b[FC_MAX_WIDTH];
        const float *in = input;
        for (uint8_t l = 0; l < model->layers; l++) {
            float *out = l + 1 == model->layers ? logits : (l % 2 ? b : a);
            layer_f32(&model->layer[l], in, out);
            in = out;
        }
    }
    return FC_OK;
}
