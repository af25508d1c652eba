/*
 * The multi-dsNN system of thesis ch.3 on the MCU: a decision-tree selector sends each input
 * to one of up to two data-specialised FC nets (dsNN_main, dsNN_tail).
 *
 * Blob "AIMS" (little-endian), as drivers/mcu_model.py writes it:
 *   header: magic "AIMS" | u8 version (1) | u8 nets (1..2) | u16 tree_nodes (0: no tree, one net)
 *           | u16 input_dim | u16 reserved
 *   tree_nodes x 12 bytes: i16 feature (-1: leaf) | u8 leaf_net | u8 reserved | u16 left | u16 right
 *           | f32 threshold; an inner node goes left when x[feature] <= threshold (float32)
 *   per net: u32 blob_length | u16 outputs | u16 reserved | u8 label[outputs] padded to 4
 *           | the net's "AIFC" blob (fc.h) padded to 4. label[] maps the net's outputs to
 *           classes: a dsNN trained on a tree partition may have seen only some classes.
 * A plain "AIFC" blob is a one-net system without a tree (outputs are the classes).
 */
#ifndef ADAPTINF_DSNN_H
#define ADAPTINF_DSNN_H

#include <stddef.h>
#include <stdint.h>

#include "fc.h"

#define DSNN_MAGIC 0x534D4941u   /* "AIMS" */
#define DSNN_VERSION 1u
#define DSNN_MAX_NETS 2u
#define DSNN_MAX_NODES 512u

typedef struct {
    int16_t feature;
    uint8_t leaf_net;
    uint16_t left, right;
    float threshold;
} dsnn_node;

typedef struct {
    uint8_t nets;
    uint16_t nodes;
    uint16_t input_dim;
    const uint8_t *tree;            /* nodes x 12 bytes, read in place */
    fc_model net[DSNN_MAX_NETS];
    const uint8_t *label[DSNN_MAX_NETS];   /* NULL: identity */
} dsnn_system;

/* Parse and bounds-check an AIMS or AIFC blob (everything points into it). */
fc_status dsnn_parse(const uint8_t *blob, size_t length, dsnn_system *system);

/* Which net the tree picks for x (0 without a tree). */
uint8_t dsnn_route(const dsnn_system *system, const float *x);

typedef struct {
    uint8_t label, net;
    uint16_t outputs;
    float confidence;
    const float *logits;   /* the chosen net's, valid until the next run */
} dsnn_result;

/* Route, run the chosen net, softmax confidence, label through the net's class map. */
dsnn_result dsnn_run(const dsnn_system *system, const float *x);

#endif
