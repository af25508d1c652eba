/*
 * adaptinf MCU firmware: the serial command loop (docs/serial-protocol.md).
 *
 * HELLO at boot (and on request), PING -> PONG, LOAD_BEGIN / LOAD_CHUNK / LOAD_END put a
 * model blob in RAM (each chunk CRC-checked by its frame, the whole blob by a CRC-16 in
 * LOAD_END), INFER runs it and answers RESULT {class, confidence, count}: the SysTick
 * count of the inference, which under QEMU -icount is instructions, not silicon cycles.
 * Bad frames get ERROR with the decoder's code; the loop never stops.
 */
#include <math.h>
#include <string.h>

#include "board.h"
#include "fc.h"
#include "proto.h"

#define FIRMWARE_VERSION 1u
#define SYSTICK_RELOAD 0x00FFFFFFu

static uint8_t model_blob[FC_MODEL_BYTES];
static uint32_t model_length, model_expected;
static int model_ready;
static fc_model model;
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

static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static void hello(uint8_t seq)
{
    uint8_t p[12];
    p[0] = FIRMWARE_VERSION;
    p[1] = PROTO_VERSION;
    p[2] = (uint8_t)(PROTO_MAX_PAYLOAD & 0xFF);
    p[3] = (uint8_t)(PROTO_MAX_PAYLOAD >> 8);
    put32(p + 4, FC_MODEL_BYTES);
    put32(p + 8, model_ready ? model_length : 0);
    send(PROTO_HELLO_REPLY, seq, p, sizeof p);
}

static void infer(uint8_t seq, const proto_frame *f)
{
    static float input[FC_MAX_WIDTH], logits[FC_MAX_WIDTH];
    if (!model_ready) {
        send_error(seq, PROTO_ERR_NOT_LOADED);
        return;
    }
    if (f->length != 4u * model.input_dim) {
        send_error(seq, PROTO_ERR_LENGTH);
        return;
    }
    memcpy(input, f->payload, f->length);
    uint32_t start = ticks();
    fc_run(&model, input, logits);
    uint32_t count = ticks() - start;
    uint16_t best = 0;
    float total = 0.0f;
    for (uint16_t i = 1; i < model.classes; i++) {
        if (logits[i] > logits[best]) best = i;
    }
    for (uint16_t i = 0; i < model.classes; i++) {
        total += expf(logits[i] - logits[best]);
    }
    uint8_t p[12];
    float confidence = 1.0f / total;
    p[0] = (uint8_t)best;
    p[1] = model.dtype;
    p[2] = p[3] = 0;
    memcpy(p + 4, &confidence, 4);
    put32(p + 8, count);
    send(PROTO_RESULT, seq, p, sizeof p);
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
        if (f->length < 4 || offset != model_length || offset + n > model_expected) {
            send_error(f->seq, PROTO_ERR_LENGTH);   /* out of order or too much: the host restarts */
        } else {
            memcpy(model_blob + offset, f->payload + 4, n);
            model_length += n;
            send(PROTO_ACK, f->seq, NULL, 0);
        }
        break;
    }
    case PROTO_LOAD_END: {
        uint16_t crc = f->length >= 2 ? (uint16_t)(f->payload[0] | f->payload[1] << 8) : 0;
        if (model_length != model_expected || crc != proto_crc16(model_blob, model_length)) {
            send_error(f->seq, PROTO_ERR_CRC);
        } else if (fc_parse(model_blob, model_length, &model) != FC_OK) {
            send_error(f->seq, PROTO_ERR_MODEL);
        } else {
            model_ready = 1;
            send(PROTO_ACK, f->seq, NULL, 0);
        }
        break;
    }
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
