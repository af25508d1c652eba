/*
 * adaptinf host <-> MCU serial protocol, version 1: the firmware's half.
 *
 * A frame before stuffing:
 *   [0] version (PROTO_VERSION)   [1] type (proto_type)   [2] seq (echoed by the reply)
 *   [3] flags (0)                 [4..5] payload length, little-endian
 *   [6..6+len) payload            [6+len..8+len) CRC-16/CCITT-FALSE of bytes 0..6+len, little-endian
 * COBS-encoded, then a 0x00 delimiter. A receiver resynchronises at the next 0x00 after
 * noise; an empty frame (0x00 0x00) is a no-op a sender may use to flush the line.
 * The host's copy of these numbers is drivers/mcu_protocol.py; a test checks they agree.
 * Hardware-free: bytes in, checked frames out, no globals, no malloc (Zephyr SMP style).
 */
#ifndef ADAPTINF_PROTO_H
#define ADAPTINF_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1u
#define PROTO_HEADER_BYTES 6u
#define PROTO_CRC_BYTES 2u
#define PROTO_MAX_PAYLOAD 512u
#define PROTO_MAX_RAW (PROTO_HEADER_BYTES + PROTO_MAX_PAYLOAD + PROTO_CRC_BYTES)
/* COBS adds one byte, plus one per 254 bytes of data */
#define PROTO_MAX_ENCODED (PROTO_MAX_RAW + PROTO_MAX_RAW / 254u + 2u)

typedef enum {
    PROTO_HELLO = 0x01, PROTO_HELLO_REPLY = 0x02, PROTO_PING = 0x03, PROTO_PONG = 0x04,
    PROTO_LOAD_BEGIN = 0x05, PROTO_LOAD_CHUNK = 0x06, PROTO_LOAD_END = 0x07,
    PROTO_INFER = 0x08, PROTO_RESULT = 0x09, PROTO_ACK = 0x0A, PROTO_INPUT_CHUNK = 0x0B, PROTO_ERROR = 0x7F
} proto_type;

/* Error codes carried in PROTO_ERROR replies, and returned by the decoder. */
typedef enum {
    PROTO_OK = 0, PROTO_ERR_CRC = 1, PROTO_ERR_VERSION = 2, PROTO_ERR_LENGTH = 3, PROTO_ERR_TYPE = 4,
    PROTO_ERR_TOO_LARGE = 5, PROTO_ERR_COBS = 6, PROTO_ERR_NOT_LOADED = 7, PROTO_ERR_MODEL = 8,
    PROTO_ERR_BUSY = 9
} proto_status;

typedef struct {
    uint8_t type;
    uint8_t seq;
    uint16_t length;
    uint8_t payload[PROTO_MAX_PAYLOAD];
} proto_frame;

typedef struct {
    uint8_t buffer[PROTO_MAX_ENCODED];
    size_t used;
    int overflowed;   /* dropping bytes until the next delimiter */
} proto_decoder;

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor. */
uint16_t proto_crc16(const uint8_t *data, size_t length);

/* COBS; return the output length, or 0 when it would not fit / the input is not valid COBS. */
size_t proto_cobs_encode(const uint8_t *in, size_t length, uint8_t *out, size_t capacity);
size_t proto_cobs_decode(const uint8_t *in, size_t length, uint8_t *out, size_t capacity);

/* A whole frame: header, payload, CRC, COBS and the delimiter. Returns bytes written, 0 on error. */
size_t proto_encode(uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t length,
                    uint8_t *out, size_t capacity);

void proto_decoder_init(proto_decoder *decoder);

/*
 * Feed one received byte. Returns PROTO_OK with *complete = 1 when `frame` holds a checked
 * frame; an error status (CRC, VERSION, LENGTH, COBS, TOO_LARGE) when a delimited frame was
 * bad, after which decoding continues with the next one; PROTO_OK with *complete = 0 otherwise.
 */
proto_status proto_decoder_feed(proto_decoder *decoder, uint8_t byte, proto_frame *frame, int *complete);

#endif
