/*
 * Fully-connected networks for the Cortex-M4: the model blob and the kernels.
 *
 * Blob (little-endian), as drivers/mcu_model.py writes it:
 *   header: magic "AIFC" | u8 version (1) | u8 dtype (0 int8, 1 float32) | u8 layers | u8 reserved
 *           | u16 input_dim | u16 classes | f32 input_scale (int8: x_q = round(x / input_scale))
 *   per layer: u16 in | u16 out | u8 relu | u8 reserved[3] | f32 requant (int8: out_scale multiplier;
 *           the last layer's turns accumulators into logits) | then the weights (out x in, row-major,
 *           int8 or f32) | then the biases (out; int32 for int8 nets, f32 otherwise), each section
 *           padded to 4 bytes.
 * int8 arithmetic (symmetric, zero point 0): acc = sum(w_q * x_q) + b_q (int32);
 * hidden: x_q' = clamp(round(acc * requant), -128, 127), ReLU as clamp at 0;
 * last: logit = acc * requant (float). The host reference (drivers/mcu_model.py) does the same.
 */
#ifndef ADAPTINF_FC_H
#define ADAPTINF_FC_H

#include <stddef.h>
#include <stdint.h>

#define FC_MAGIC 0x43464941u   /* "AIFC" */
#define FC_VERSION 1u
#define FC_MAX_LAYERS 8u
#define FC_MAX_INPUT 1024u     /* features a net takes: its first layer's inputs (e.g. 32x32 grey) */
#define FC_MAX_WIDTH 256u      /* outputs of any layer: the activation buffers */
#define FC_MODEL_BYTES (96u * 1024u)

typedef enum { FC_INT8 = 0, FC_F32 = 1 } fc_dtype;
/* Values travel as the detail byte of a MODEL error (docs/serial-protocol.md): append only. */
typedef enum {
    FC_OK = 0, FC_ERR_MAGIC, FC_ERR_VERSION, FC_ERR_SHAPE, FC_ERR_SIZE, FC_ERR_INPUT,
    FC_ERR_TOO_MANY_INPUTS,   /* input_dim > FC_MAX_INPUT */
    FC_ERR_TOO_WIDE           /* a layer's outputs > FC_MAX_WIDTH */
} fc_status;

typedef struct {
    uint16_t in, out;
    uint8_t relu;
    float requant;
    const void *weights;   /* int8_t[out][in] or float[out][in] */
    const void *bias;      /* int32_t[out] or float[out] */
} fc_layer;

typedef struct {
    fc_dtype dtype;
    uint8_t layers;
    uint16_t input_dim, classes;
    float input_scale;
    fc_layer layer[FC_MAX_LAYERS];
} fc_model;

/* Parse and bounds-check a blob (the layers point into it). */
fc_status fc_parse(const uint8_t *blob, size_t length, fc_model *model);

/* int8 layer: y = requant(W x + b); w row-major [out][in]. Returns FC_OK. */
fc_status fc_layer_s8(const fc_layer *layer, const int8_t *x, int8_t *y, float *logits);

/* Run the whole network; input is float features (quantised inside for int8 nets). */
fc_status fc_run(const fc_model *model, const float *input, float *logits);

#endif
