/* Multi-dsNN: the tree selector and the per-net class maps around the FC kernels (dsnn.h). */
#include "dsnn.h"

#include <math.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static size_t pad4(size_t n) { return (n + 3u) & ~(size_t)3u; }

static dsnn_node node_at(const dsnn_system *s, uint16_t i)
{
    const uint8_t *p = s->tree + 12u * i;
    dsnn_node n;
    n.feature = (int16_t)rd16(p);
    n.leaf_net = p[2];
    n.left = rd16(p + 4);
    n.right = rd16(p + 6);
    memcpy(&n.threshold, p + 8, 4);
    return n;
}

fc_status dsnn_parse(const uint8_t *blob, size_t length, dsnn_system *s)
{
    memset(s, 0, sizeof *s);
    if (length >= 4 && rd32(blob) == FC_MAGIC) {   /* a single net: no tree, no class map */
        fc_status status = fc_parse(blob, length, &s->net[0]);
        s->nets = 1;
        s->input_dim = s->net[0].input_dim;
        return status;
    }
    if (length < 12 || rd32(blob) != DSNN_MAGIC) {
        return FC_ERR_MAGIC;
    }
    if (blob[4] != DSNN_VERSION) {
        return FC_ERR_VERSION;
    }
    s->nets = blob[5];
    s->nodes = rd16(blob + 6);
    s->input_dim = rd16(blob + 8);
    if (s->nets == 0 || s->nets > DSNN_MAX_NETS || s->nodes > DSNN_MAX_NODES || (s->nodes == 0 && s->nets != 1)) {
        return FC_ERR_SHAPE;
    }
    size_t at = 12;
    if (at + 12u * s->nodes > length) {
        return FC_ERR_SIZE;
    }
    s->tree = blob + at;
    for (uint16_t i = 0; i < s->nodes; i++) {   /* every walk stays inside the tree and the input */
        dsnn_node n = node_at(s, i);
        if (n.feature < 0 ? n.leaf_net >= s->nets
                          : (n.feature >= s->input_dim || n.left >= s->nodes || n.right >= s->nodes)) {
            return FC_ERR_SHAPE;
        }
    }
    at += 12u * s->nodes;
    for (uint8_t k = 0; k < s->nets; k++) {
        if (at + 8 > length) {
            return FC_ERR_SIZE;
        }
        uint32_t net_length = rd32(blob + at);
        uint16_t outputs = rd16(blob + at + 4);
        at += 8;
        if (at + pad4(outputs) + net_length > length) {
            return FC_ERR_SIZE;
        }
        s->label[k] = blob + at;
        at += pad4(outputs);
        fc_status status = fc_parse(blob + at, net_length, &s->net[k]);
        if (status != FC_OK) {
            return status;
        }
        if (s->net[k].classes != outputs || s->net[k].input_dim != s->input_dim) {
            return FC_ERR_SHAPE;
        }
        at += pad4(net_length);
    }
    return FC_OK;
}

uint8_t dsnn_route(const dsnn_system *s, const float *x)
{
    if (s->nodes == 0) {
        return 0;
    }
    uint16_t i = 0;
    for (uint16_t steps = 0; steps < s->nodes; steps++) {   /* bounded: a malformed cycle cannot hang */
        dsnn_node n = node_at(s, i);
        if (n.feature < 0) {
            return n.leaf_net;
        }
        i = x[n.feature] <= n.threshold ? n.left : n.right;
    }
    return 0;
}

dsnn_result dsnn_run(const dsnn_system *s, const float *x)
{
    static float logits[FC_MAX_WIDTH];
    dsnn_result r;
    r.net = dsnn_route(s, x);
    const fc_model *m = &s->net[r.net];
    fc_run(m, x, logits);
    uint16_t best = 0;
    float total = 0.0f;
    for (uint16_t i = 1; i < m->classes; i++) {
        if (logits[i] > logits[best]) best = i;
    }
    for (uint16_t i = 0; i < m->classes; i++) {
        total += expf(logits[i] - logits[best]);
    }
    r.confidence = 1.0f / total;
    r.outputs = m->classes;
    r.logits = logits;
    r.label = s->label[r.net] ? s->label[r.net][best] : (uint8_t)best;
    return r;
}
