/* adaptinf serial protocol codec: see include/proto.h. Compiled for the Cortex-M4 and, in tests, the host. */
#include "proto.h"

#include <string.h>

uint16_t proto_crc16(const uint8_t *data, size_t length)
{
    uint16_t crc = 0xFFFFu;
    for (size_t i = 0; i < length; i++) {
        crc ^= (uint16_t)(data[i] << 8);
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

size_t proto_cobs_encode(const uint8_t *in, size_t length, uint8_t *out, size_t capacity)
{
    size_t code_at = 0, written = 1;
    uint8_t code = 1;
    if (capacity == 0) {
        return 0;
    }
    for (size_t i = 0; i < length; i++) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = written++;
            code = 1;
        } else {
            if (written >= capacity) {
                return 0;
            }
            out[written++] = in[i];
            if (++code == 0xFF) {
                out[code_at] = code;
                code_at = written++;
                code = 1;
            }
        }
        if (written > capacity) {
            return 0;
        }
    }
    out[code_at] = code;
    return written;
}

size_t proto_cobs_decode(const uint8_t *in, size_t length, uint8_t *out, size_t capacity)
{
    size_t read = 0, written = 0;
    while (read < length) {
        uint8_t code = in[read++];
        if (code == 0) {
            return 0;  /* a zero cannot appear inside a COBS block */
        }
        for (uint8_t i = 1; i < code; i++) {
            if (read >= length || written >= capacity || in[read] == 0) {
                return 0;
            }
            out[written++] = in[read++];
        }
        if (code != 0xFF && read < length) {
            if (written >= capacity) {
                return 0;
            }
            out[written++] = 0;
        }
    }
    return written;
}

size_t proto_encode(uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t length,
                    uint8_t *out, size_t capacity)
{
    uint8_t raw[PROTO_MAX_RAW];
    if (length > PROTO_MAX_PAYLOAD) {
        return 0;
    }
    raw[0] = PROTO_VERSION;
    raw[1] = type;
    raw[2] = seq;
    raw[3] = 0;
    raw[4] = (uint8_t)(length & 0xFFu);
    raw[5] = (uint8_t)(length >> 8);
    if (length) {
        memcpy(raw + PROTO_HEADER_BYTES, payload, length);
    }
    uint16_t crc = proto_crc16(raw, PROTO_HEADER_BYTES + length);
    raw[PROTO_HEADER_BYTES + length] = (uint8_t)(crc & 0xFFu);
    raw[PROTO_HEADER_BYTES + length + 1] = (uint8_t)(crc >> 8);
    if (capacity < 1) {
        return 0;
    }
    size_t n = proto_cobs_encode(raw, PROTO_HEADER_BYTES + length + PROTO_CRC_BYTES, out, capacity - 1);
    if (n == 0) {
        return 0;
    }
    out[n] = 0;
    return n + 1;
}

void proto_decoder_init(proto_decoder *decoder)
{
    decoder->used = 0;
    decoder->overflowed = 0;
}

static proto_status parse(const uint8_t *encoded, size_t length, proto_frame *frame)
{
    uint8_t raw[PROTO_MAX_RAW];
    size_t n = proto_cobs_decode(encoded, length, raw, sizeof raw);
    if (n == 0) {
        return PROTO_ERR_COBS;
    }
    if (n < PROTO_HEADER_BYTES + PROTO_CRC_BYTES) {
        return PROTO_ERR_LENGTH;
    }
    uint16_t declared = (uint16_t)(raw[4] | (raw[5] << 8));
    if (declared > PROTO_MAX_PAYLOAD || n != PROTO_HEADER_BYTES + declared + PROTO_CRC_BYTES) {
        return PROTO_ERR_LENGTH;
    }
    uint16_t crc = (uint16_t)(raw[n - 2] | (raw[n - 1] << 8));
    if (crc != proto_crc16(raw, n - PROTO_CRC_BYTES)) {
        return PROTO_ERR_CRC;
    }
    if (raw[0] != PROTO_VERSION) {
        return PROTO_ERR_VERSION;
    }
    frame->type = raw[1];
    frame->seq = raw[2];
    frame->length = declared;
    memcpy(frame->payload, raw + PROTO_HEADER_BYTES, declared);
    return PROTO_OK;
}

proto_status proto_decoder_feed(proto_decoder *decoder, uint8_t byte, proto_frame *frame, int *complete)
{
    *complete = 0;
    if (byte != 0) {
        if (decoder->used < sizeof decoder->buffer) {
            decoder->buffer[decoder->used++] = byte;
        } else {
            decoder->overflowed = 1;   /* too long to be ours: drop until the delimiter */
        }
        return PROTO_OK;
    }
    size_t used = decoder->used;
    int overflowed = decoder->overflowed;
    proto_decoder_init(decoder);
    if (overflowed) {
        return PROTO_ERR_TOO_LARGE;
    }
    if (used == 0) {
        return PROTO_OK;  /* an empty frame: a flush, not an error */
    }
    proto_status status = parse(decoder->buffer, used, frame);
    *complete = status == PROTO_OK;
    return status;
}
