/*
 * adaptinf MCU firmware: the serial command loop (docs/serial-protocol.md).
 *
 * HELLO at boot (and on request), PING -> PONG, LOAD_BEGIN / LOAD_CHUNK / LOAD_END put a
 * model blob in RAM (each chunk CRC-checked by its frame, the whole blob by a CRC-16 in
 * LOAD_END; an AIMS multi-dsNN or a plain AIFC net), INFER routes and runs it and answers
 * RESULT {class, dtype, net, n, confidence, count, n logits}: the SysTick
 * count of the inference, which under QEMU -icount is instructions, not silicon cycles.
 * An input larger than one payload (up to FC_MAX_INPUT features) arrives in INPUT_CHUNKs,
 * then an empty INFER runs on it. Bad frames get ERROR with the decoder's code (a model
 * the parser refuses: MODEL and the parser's reason); the loop never stops.
 */
#include <string.h>

#include "board.h"
#include "dsnn.h"
#include "proto.h"

#define FIRMWARE_VERSION 2u   /* 2: HELLO_REPLY ends with the loaded model's CRC-16 */
#define SYSTICK_RELOAD 0x00FFFFFFu
#define RESULT_MAX_LOGITS ((PROTO_MAX_PAYLOAD - 12u) / 4u)

static uint8_t model_blob[FC_MODEL_BYTES];
static float input[FC_MAX_INPUT];   /* a frame's features: one INFER payload, or INPUT_CHUNKs */
static uint32_t input_staged, last_input_offset = 0xFFFFFFFFu;
static uint32_t model_length, model_expected, last_chunk_offset = 0xFFFFFFFFu;
static int model_ready;
static uint16_t model_crc;   /* of the loaded model: a host that reconnects skips an identical reload */
static dsnn_system model;
static volatile uint32_t systick_wraps;

void systick_handler(void) { systick_wraps++; }

static uint32_t ticks(void)   /* 24-bit down-counter, extended by the wrap count */
{
    uint32_t wraps, value;
    do {
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return wraps * (SYSTICK_RELOAD + 1u) + (SYSTICK_RELOAD - value);
}

static void send(uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t length)
{
    static uint8_t out[PROTO_MAX_ENCODED + 1];
    size_t n = proto_encode(type, seq, payload, length, out, sizeof out);
    for (size_t i = 0; i < n; i++) {
        uart_put(out[i]);
    }
}

static void send_error(uint8_t seq, uint8_t code) { send(PROTO_ERROR, seq, &code, 1); }

static void send_model_error(uint8_t seq, fc_status why)   /* MODEL, and the parser's reason */
{
    uint8_t p[2] = {PROTO_ERR_MODEL, (uint8_t)why};
    send(PROTO_ERROR, seq, p, sizeof p);
}

static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static void hello(uint8_t seq)
{
    uint8_t p[18];
    p[0] = FIRMWARE_VERSION;
    p[1] = PROTO_VERSION;
    p[2] = (uint8_t)(PROTO_MAX_PAYLOAD & 0xFF);
    p[3] = (uint8_t)(PROTO_MAX_PAYLOAD >> 8);
    put32(p + 4, FC_MODEL_BYTES);
    put32(p + 8, model_ready ? model_length : 0);
    p[12] = (uint8_t)(FC_MAX_INPUT & 0xFF);
    p[13] = (uint8_t)(FC_MAX_INPUT >> 8);
    p[14] = (uint8_t)(FC_MAX_WIDTH & 0xFF);
    p[15] = (uint8_t)(FC_MAX_WIDTH >> 8);
    p[16] = (uint8_t)(model_ready ? model_crc & 0xFF : 0);
    p[17] = (uint8_t)(model_ready ? model_crc >> 8 : 0);
    send(PROTO_HELLO_REPLY, seq, p, sizeof p);
}

static void input_chunk(uint8_t seq, const proto_frame *f)
{
    /* {offset (features, u16), float32 values}; in order, as LOAD_CHUNK */
    uint32_t offset = f->length >= 2 ? (uint32_t)(f->payload[0] | f->payload[1] << 8) : 0xFFFFFFFFu;
    uint32_t n = f->length >= 2 ? (f->length - 2u) / 4u : 0;
    if (!model_ready) {
        send_error(seq, PROTO_ERR_NOT_LOADED);
    } else if (f->length >= 2 && offset == last_input_offset && offset + n == input_staged) {
        send(PROTO_ACK, seq, NULL, 0);           /* a retransmission of the last chunk (its ACK was lost) */
    } else if (f->length < 2 || (f->length - 2u) % 4u || offset != input_staged || offset + n > model.input_dim) {
        input_staged = 0;                        /* out of order or too much: the host starts again */
        last_input_offset = 0xFFFFFFFFu;
        send_error(seq, PROTO_ERR_LENGTH);
    } else {
        memcpy(input + offset, f->payload + 2, 4u * n);
        last_input_offset = offset;
        input_staged += n;
        send(PROTO_ACK, seq, NULL, 0);
    }
}

static void infer(uint8_t seq, const proto_frame *f)
{
    if (!model_ready) {
        send_error(seq, PROTO_ERR_NOT_LOADED);
        return;
    }
    if (f->length == 0 && input_staged == model.input_dim) {
        /* the input came in INPUT_CHUNKs */
    } else if (f->length != 4u * model.input_dim) {
        send_error(seq, PROTO_ERR_LENGTH);
        return;
    } else {
        memcpy(input, f->payload, f->length);
    }
    input_staged = 0;                            /* each staged input answers one INFER */
    last_input_offset = 0xFFFFFFFFu;
    uint32_t start = ticks();
    dsnn_result r = dsnn_run(&model, input);   /* the count covers the tree, the net and the softmax */
    uint32_t count = ticks() - start;
    /* the logits follow, so the host can check the arithmetic bit for bit */
    static uint8_t p[PROTO_MAX_PAYLOAD];
    uint16_t shown = r.outputs < RESULT_MAX_LOGITS ? r.outputs : RESULT_MAX_LOGITS;
    p[0] = r.label;
    p[1] = model.net[r.net].dtype;
    p[2] = r.net;
    p[3] = (uint8_t)shown;
    memcpy(p + 4, &r.confidence, 4);
    put32(p + 8, count);
    memcpy(p + 12, r.logits, 4u * shown);
    send(PROTO_RESULT, seq, p, (uint16_t)(12u + 4u * shown));
}

static void handle(const proto_frame *f)
{
    switch (f->type) {
    case PROTO_HELLO:
        hello(f->seq);
        break;
    case PROTO_PING:
        send(PROTO_PONG, f->seq, f->payload, f->length);
        break;
    case PROTO_LOAD_BEGIN:
        model_ready = 0;
        model_length = 0;
        last_chunk_offset = 0xFFFFFFFFu;
        model_expected = f->length >= 4 ? get32(f->payload) : 0;
        if (model_expected == 0 || model_expected > FC_MODEL_BYTES) {
            send_error(f->seq, PROTO_ERR_TOO_LARGE);
        } else {
            send(PROTO_ACK, f->seq, NULL, 0);
        }
        break;
    case PROTO_LOAD_CHUNK: {
        uint32_t offset = f->length >= 4 ? get32(f->payload) : 0xFFFFFFFFu;
        uint32_t n = f->length - 4u;
        if (f->length >= 4 && offset == last_chunk_offset && offset + n == model_length) {
            send(PROTO_ACK, f->seq, NULL, 0);       /* a retransmission of the last chunk (its ACK was lost) */
        } else if (f->length < 4 || offset != model_length || offset + n > model_expected) {
            send_error(f->seq, PROTO_ERR_LENGTH);   /* out of order or too much: the host restarts */
        } else {
            memcpy(model_blob + offset, f->payload + 4, n);
            last_chunk_offset = offset;
            model_length += n;
            send(PROTO_ACK, f->seq, NULL, 0);
        }
        break;
    }
    case PROTO_LOAD_END: {
        uint16_t crc = f->length >= 2 ? (uint16_t)(f->payload[0] | f->payload[1] << 8) : 0;
        if (model_length != model_expected || crc != proto_crc16(model_blob, model_length)) {
            send_error(f->seq, PROTO_ERR_CRC);
        } else {
            fc_status why = dsnn_parse(model_blob, model_length, &model);
            if (why != FC_OK) {
                send_model_error(f->seq, why);
            } else {
                model_ready = 1;
                model_crc = crc;
                input_staged = 0;
                last_input_offset = 0xFFFFFFFFu;
                send(PROTO_ACK, f->seq, NULL, 0);
            }
        }
        break;
    }
    case PROTO_INPUT_CHUNK:
        input_chunk(f->seq, f);
        break;
    case PROTO_INFER:
        infer(f->seq, f);
        break;
    default:
        send_error(f->seq, PROTO_ERR_TYPE);
    }
}

int main(void)
{
    static proto_decoder decoder;
    static proto_frame frame;
    uart_init();
    SYST_RVR = SYSTICK_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7u;   /* enable, interrupt on wrap, processor clock */
    proto_decoder_init(&decoder);
    uart_put(0);     /* flush the line, then announce ourselves: a reset is visible to the host */
    hello(0);
    for (;;) {
        uint8_t byte;
        int complete;
        if (!uart_get(&byte)) {
            continue;
        }
        proto_status status = proto_decoder_feed(&decoder, byte, &frame, &complete);
        if (complete) {
            handle(&frame);
        } else if (status != PROTO_OK) {
            send_error(0xFF, (uint8_t)status);   /* the seq of a broken frame is unknown */
        }
    }
}
