/* A native-code solver for ParanoIM's proof of work (docs/pow.md §1), written as an
 * attacker with a compiler would write it: the BLAKE3 compression function of the
 * output blocks, several counters at once in SIMD registers, keeping only the first
 * 8 bytes of each block. Used by tests/bench/bench_pow.py to measure the honest
 * Python solver against native code on the same machine, in the same run.
 *
 *   pow_attacker MODE DIGEST_HEX BITS START COUNT
 *     MODE: scalar | avx2 | avx512 | lib (the official BLAKE3 C library's XOF,
 *           256 KiB per call, as the Python solver asks the Rust one; only when
 *           built with -DWITH_LIB)
 *   prints: "<nonce or -1> <candidates tried> <cpu seconds>"
 *
 * The seed (69 bytes) is two blocks of one chunk: the first is compressed once
 * (CHUNK_START); every output block n is then compress(cv, last block, counter n,
 * block_len 5, CHUNK_END | ROOT), and its first 8 bytes are words 0 and 1 of the
 * output, v[0] ^ v[8] and v[1] ^ v[9].
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef WITH_LIB
#include "blake3.h"
#endif

static const uint32_t IV[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
                               0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};
static const uint8_t PERM[16] = {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8};
enum { CHUNK_START = 1, CHUNK_END = 2, ROOT = 8 };
static const char CTX[] = "ParanoIM 2026-11 proof of work input";

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

/* message word order of each of the 7 rounds */
static uint8_t SCHED[7][16];
static void make_schedule(void) {
    for (int i = 0; i < 16; i++) SCHED[0][i] = (uint8_t)i;
    for (int r = 1; r < 7; r++)
        for (int i = 0; i < 16; i++) SCHED[r][i] = SCHED[r - 1][PERM[i]];
}

#define G(a, b, c, d, x, y)                        \
    do {                                           \
        v[a] = v[a] + v[b] + (x);                  \
        v[d] = rotr(v[d] ^ v[a], 16);              \
        v[c] = v[c] + v[d];                        \
        v[b] = rotr(v[b] ^ v[c], 12);              \
        v[a] = v[a] + v[b] + (y);                  \
        v[d] = rotr(v[d] ^ v[a], 8);               \
        v[c] = v[c] + v[d];                        \
        v[b] = rotr(v[b] ^ v[c], 7);               \
    } while (0)

static void compress(const uint32_t cv[8], const uint32_t m[16], uint64_t counter,
                     uint32_t block_len, uint32_t flags, uint32_t out[16]) {
    uint32_t v[16] = {cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
                      IV[0], IV[1], IV[2], IV[3], (uint32_t)counter,
                      (uint32_t)(counter >> 32), block_len, flags};
    for (int r = 0; r < 7; r++) {
        const uint8_t *s = SCHED[r];
        G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) {
        out[i] = v[i] ^ v[i + 8];
        out[i + 8] = v[i + 8] ^ cv[i];
    }
}

static void words(const uint8_t *p, uint32_t w[16]) {
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
               (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
}

/* the chaining value after the seed's first block, and the last block's words */
static uint32_t CV[8], LAST[16];
static uint8_t SEED[69];

static void setup(const uint8_t digest[32]) {
    memcpy(SEED, CTX, 36);
    SEED[36] = 0;
    memcpy(SEED + 37, digest, 32);
    uint32_t m[16], out[16];
    words(SEED, m);
    compress(IV, m, 0, 64, CHUNK_START, out);
    memcpy(CV, out, sizeof CV);
    uint8_t last[64] = {0};
    memcpy(last, SEED + 64, 5);
    words(last, LAST);
}

/* leading zero bits of the block's first 8 bytes read big-endian */
static int head_bits(uint32_t w0, uint32_t w1) {
    uint64_t be = (uint64_t)__builtin_bswap32(w0) << 32 | __builtin_bswap32(w1);
    return be ? __builtin_clzll(be) : 64;
}

static int64_t solve_scalar(int bits, uint64_t start, uint64_t count) {
    uint32_t out[16];
    for (uint64_t n = start; n < start + count; n++) {
        compress(CV, LAST, n, 5, CHUNK_END | ROOT, out);
        if (head_bits(out[0], out[1]) >= bits) return (int64_t)n;
    }
    return -1;
}

/* ---- several counters at once: one vector lane per output block ---------------- */

#define VROUNDS(VT, ADD, XOR, ROR16, ROR12, ROR8, ROR7, SET1)                         \
    for (int r = 0; r < 7; r++) {                                                    \
        const uint8_t *s = SCHED[r];                                                 \
        VG(0, 4, 8, 12, s[0], s[1]);                                                 \
        VG(1, 5, 9, 13, s[2], s[3]);                                                 \
        VG(2, 6, 10, 14, s[4], s[5]);                                                \
        VG(3, 7, 11, 15, s[6], s[7]);                                                \
        VG(0, 5, 10, 15, s[8], s[9]);                                                \
        VG(1, 6, 11, 12, s[10], s[11]);                                              \
        VG(2, 7, 8, 13, s[12], s[13]);                                               \
        VG(3, 4, 9, 14, s[14], s[15]);                                               \
    }

__attribute__((target("avx2"))) static int64_t solve_avx2(int bits, uint64_t start,
                                                          uint64_t count) {
    __m256i m[16];
    for (int i = 0; i < 16; i++) m[i] = _mm256_set1_epi32((int)LAST[i]);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i r16 = _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12,
                                         13, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15,
                                         12, 13);
    const __m256i r8 = _mm256_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15,
                                        12, 1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14,
                                        15, 12);
#define ROR(x, n) _mm256_or_si256(_mm256_srli_epi32(x, n), _mm256_slli_epi32(x, 32 - (n)))
#define VG(a, b, c, d, x, y)                                                   \
    do {                                                                       \
        v[a] = _mm256_add_epi32(_mm256_add_epi32(v[a], v[b]), m[x]);           \
        v[d] = _mm256_shuffle_epi8(_mm256_xor_si256(v[d], v[a]), r16);         \
        v[c] = _mm256_add_epi32(v[c], v[d]);                                   \
        v[b] = ROR(_mm256_xor_si256(v[b], v[c]), 12);                          \
        v[a] = _mm256_add_epi32(_mm256_add_epi32(v[a], v[b]), m[y]);           \
        v[d] = _mm256_shuffle_epi8(_mm256_xor_si256(v[d], v[a]), r8);          \
        v[c] = _mm256_add_epi32(v[c], v[d]);                                   \
        v[b] = ROR(_mm256_xor_si256(v[b], v[c]), 7);                           \
    } while (0)
    for (uint64_t n = start; n < start + count; n += 8) {
        __m256i v[16];
        for (int i = 0; i < 8; i++) v[i] = _mm256_set1_epi32((int)CV[i]);
        for (int i = 0; i < 4; i++) v[8 + i] = _mm256_set1_epi32((int)IV[i]);
        /* counters n..n+7 (the high word is the same for all eight unless n+7
           crosses 2^32, which the caller's ranges never do) */
        v[12] = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)n), lanes);
        v[13] = _mm256_set1_epi32((int)(uint32_t)(n >> 32));
        v[14] = _mm256_set1_epi32(5);
        v[15] = _mm256_set1_epi32(CHUNK_END | ROOT);
        VROUNDS(__m256i, , , , , , , );
        __m256i w0 = _mm256_xor_si256(v[0], v[8]);
        /* a candidate needs at least min(bits, 32) zero bits in word 0 (big-endian) */
        __m256i be0 = _mm256_shuffle_epi8(w0, _mm256_setr_epi8(
            3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4,
            11, 10, 9, 8, 15, 14, 13, 12));
        uint32_t lim = bits >= 32 ? 0 : (uint32_t)1 << (32 - bits);
        /* unsigned be0 < lim  <=>  max(be0, lim - 1) == lim - 1 (lim > 0) */
        int mask;
        if (lim) {
            __m256i l1 = _mm256_set1_epi32((int)(lim - 1));
            mask = _mm256_movemask_ps(_mm256_castsi256_ps(
                _mm256_cmpeq_epi32(_mm256_max_epu32(be0, l1), l1)));
        } else {
            mask = _mm256_movemask_ps(_mm256_castsi256_ps(
                _mm256_cmpeq_epi32(be0, _mm256_setzero_si256())));
        }
        while (mask) {
            int lane = __builtin_ctz((unsigned)mask);
            mask &= mask - 1;
            uint32_t a[8], b[8];
            _mm256_storeu_si256((__m256i *)a, w0);
            _mm256_storeu_si256((__m256i *)b, _mm256_xor_si256(v[1], v[9]));
            if (n + (uint64_t)lane < start + count && head_bits(a[lane], b[lane]) >= bits)
                return (int64_t)(n + (uint64_t)lane);
        }
    }
#undef VG
#undef ROR
    return -1;
}

__attribute__((target("avx512f,avx512vl"))) static int64_t solve_avx512(int bits,
                                                                       uint64_t start,
                                                                       uint64_t count) {
    __m512i m[16];
    for (int i = 0; i < 16; i++) m[i] = _mm512_set1_epi32((int)LAST[i]);
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                            14, 15);
#define VG(a, b, c, d, x, y)                                                   \
    do {                                                                       \
        v[a] = _mm512_add_epi32(_mm512_add_epi32(v[a], v[b]), m[x]);           \
        v[d] = _mm512_ror_epi32(_mm512_xor_si512(v[d], v[a]), 16);             \
        v[c] = _mm512_add_epi32(v[c], v[d]);                                   \
        v[b] = _mm512_ror_epi32(_mm512_xor_si512(v[b], v[c]), 12);             \
        v[a] = _mm512_add_epi32(_mm512_add_epi32(v[a], v[b]), m[y]);           \
        v[d] = _mm512_ror_epi32(_mm512_xor_si512(v[d], v[a]), 8);              \
        v[c] = _mm512_add_epi32(v[c], v[d]);                                   \
        v[b] = _mm512_ror_epi32(_mm512_xor_si512(v[b], v[c]), 7);              \
    } while (0)
    const __m512i odd = _mm512_set1_epi32((int)0xff00ff00u);
    const __m512i even = _mm512_set1_epi32(0x00ff00ff);
    uint32_t lim = bits >= 32 ? 0 : (uint32_t)1 << (32 - bits);
    for (uint64_t n = start; n < start + count; n += 16) {
        __m512i v[16];
        for (int i = 0; i < 8; i++) v[i] = _mm512_set1_epi32((int)CV[i]);
        for (int i = 0; i < 4; i++) v[8 + i] = _mm512_set1_epi32((int)IV[i]);
        v[12] = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)n), lanes);
        v[13] = _mm512_set1_epi32((int)(uint32_t)(n >> 32));
        v[14] = _mm512_set1_epi32(5);
        v[15] = _mm512_set1_epi32(CHUNK_END | ROOT);
        VROUNDS(__m512i, , , , , , , );
        __m512i w0 = _mm512_xor_si512(v[0], v[8]);
        /* byte swap with AVX-512F only: (x ror 8) & ff00ff00 | (x rol 8) & 00ff00ff */
        __m512i be0 = _mm512_or_si512(_mm512_and_si512(_mm512_ror_epi32(w0, 8), odd),
                                      _mm512_and_si512(_mm512_rol_epi32(w0, 8), even));
        __mmask16 mask = lim ? _mm512_cmplt_epu32_mask(be0, _mm512_set1_epi32((int)lim))
                             : _mm512_cmpeq_epi32_mask(be0, _mm512_setzero_si512());
        while (mask) {
            int lane = __builtin_ctz((unsigned)mask);
            mask &= (__mmask16)(mask - 1);
            uint32_t a[16], b[16];
            _mm512_storeu_si512(a, w0);
            _mm512_storeu_si512(b, _mm512_xor_si512(v[1], v[9]));
            if (n + (uint64_t)lane < start + count && head_bits(a[lane], b[lane]) >= bits)
                return (int64_t)(n + (uint64_t)lane);
        }
    }
#undef VG
    return -1;
}

#ifdef WITH_LIB
static int64_t solve_lib(int bits, uint64_t start, uint64_t count) {
    enum { CHUNK = 4096 };
    static uint8_t buf[64 * CHUNK];
    blake3_hasher h;
    blake3_hasher_init(&h);
    blake3_hasher_update(&h, SEED, sizeof SEED);
    for (uint64_t pos = start; pos < start + count; pos += CHUNK) {
        uint64_t n = start + count - pos < CHUNK ? start + count - pos : CHUNK;
        blake3_hasher_finalize_seek(&h, 64 * pos, buf, 64 * n);
        for (uint64_t j = 0; j < n; j++) {
            const uint8_t *p = buf + 64 * j;
            if (bits >= 8 && p[0]) continue; /* a solution starts with a zero byte */
            uint64_t be = 0;
            for (int k = 0; k < 8; k++) be = be << 8 | p[k];
            if ((be ? __builtin_clzll(be) : 64) >= bits) return (int64_t)(pos + j);
        }
    }
    return -1;
}
#endif

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODE DIGEST_HEX BITS START COUNT\n", argv[0]);
        return 2;
    }
    make_schedule();
    uint8_t digest[32];
    if (strlen(argv[2]) != 64) return 2;
    for (int i = 0; i < 32; i++) {
        unsigned x;
        if (sscanf(argv[2] + 2 * i, "%2x", &x) != 1) return 2;
        digest[i] = (uint8_t)x;
    }
    setup(digest);
    int bits = atoi(argv[3]);
    uint64_t start = strtoull(argv[4], NULL, 10), count = strtoull(argv[5], NULL, 10);
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    int64_t found;
    const char *mode = argv[1];
    if (!strcmp(mode, "scalar")) found = solve_scalar(bits, start, count);
    else if (!strcmp(mode, "avx2")) found = solve_avx2(bits, start, count);
    else if (!strcmp(mode, "avx512")) found = solve_avx512(bits, start, count);
#ifdef WITH_LIB
    else if (!strcmp(mode, "lib")) found = solve_lib(bits, start, count);
#endif
    else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    uint64_t tried = found >= 0 ? (uint64_t)found - start + 1 : count;
    printf("%lld %llu %.6f\n", (long long)found, (unsigned long long)tried, secs);
    return 0;
}
