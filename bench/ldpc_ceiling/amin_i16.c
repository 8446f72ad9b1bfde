/* A fixed-point (int16, 16 lanes per AVX2 vector) layered "amin" check update for the QC
 * codes of controller/postprocess/_qc.py, with a scalar reference that it matches bit for bit.
 * A measurement rig (bench/ldpc_ceiling/README.md), not used by controller/.
 *
 * Numbers:
 *   LLRs (posteriors, messages, inputs t = post - msg): int16, LSB 2^-6 (Q6, |LLR| < 512),
 *     saturating adds / subtracts.
 *   phi(x) = -ln tanh(x / 2) of an input's |t|: u16, LSB 2^-12 (Q12), x = min(|t|, XMAX - 1)
 *     in Q6, from 16-entry tables (vpshufb, a 16-bit entry as two byte shuffles):
 *     x < 2 (x < 128 in Q6): linear in 16 segments of 1/8, chord from the segment's start
 *       (|t| = 0 read as half an LSB);
 *     x >= 2: phi(h) e^-(l / 16) (1 - n / 64) with x = h + l / 16 + n / 64 (phi(h + d) is
 *       phi(h) e^-d within 0.1 % for h >= 2), the two factors from tables of h and l.
 *     Relative error < 0.6 % on [0.5, 4), < 2.5 % on [0.125, 0.5), up to 20 % below 0.125
 *     (absolute error there < 0.03 in the message it makes); above ~6 the Q12 rounding.
 *   Per check, over its inputs: S = sum of phi (saturating u16, at most 16), the two largest
 *     phi u1 >= u2 (the two least reliable inputs), the sign (XOR of the syndrome and inputs).
 *   Messages (the amin structure of _ldpc_core, in the phi domain): to an input with phi = u1
 *     phi(S - u1) (M1), with phi = u2 phi(S - u2) (M2), to the others the tangent
 *     phi(S) + u / sinh(S) capped at M2 (exact sum-product is phi(S - u), convex in u: the
 *     tangent at u = 0 is below it, M2 the exact value at the largest u it is used for);
 *     phi(y) and 1 / sinh(y) of the per-check sums from the table TINV indexed by y >> 2
 *     (y in Q12, so steps of 2^-10), value at the step's midpoint.
 * Layered schedule as _ldpc_core: base rows in order; within a row a block of 16 checks runs
 * its gather over all the row's circulants, its per-check step, then its scatter (the checks
 * of one base row share no variable, so this is the two-pass order of _ldpc_core); stopping
 * rules of _ldpc_core.decode (unmet-check count, stall, trend window).
 *
 * Build options: -DLB=7 (LLRs in Q7); -DPHI_EXACT (per-edge phi from a table rounded at every
 * x, two vpgatherdd per 16 inputs: the accuracy experiment); timing only, wrong values:
 * -DTIMING_NO_PHI (no per-edge phi), -DTIMING_NO_PERCHECK (no per-check table lookups).
 *
 * gcc -O3 -mavx2 -mfma -shared -fPIC amin_i16.c -o amin_i16.so -lm
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define V 16
#ifndef LB
#define LB 6             /* LLR fractional bits (Q6) */
#endif
#define QL ((double)(1 << LB))   /* LLR scale */
#define SA (LB - 3)      /* region A: segments of 1/8 */
#define SB (LB - 4)      /* region B: steps of 1/16 */
#define QP 4096.0        /* phi scale (Q12) */
#define XMAX (10 << LB)  /* |t| clamped below 10.0 */
#define NT 10241         /* TINV entries: y >> 2 for y (Q12) up to 10.0 */
#define DMAX 128         /* largest row degree */

/* phi tables (16-bit entries) and their byte planes for vpshufb (low bytes, high bytes,
 * the 16 entries twice: one copy per 128-bit lane) */
static uint16_t TAB[16], TAS[16], TH[16], TL[16];
static uint8_t PLANES[4][2][32];     /* TAB, TAS, TH, TL x (low, high) */
#ifdef PHI_EXACT
static int32_t PHIX[XMAX];  /* PHI_EXACT: phi(x) rounded to Q12 for every x (two gathers per 16 inputs) */
#endif
static int32_t TINV[NT];    /* low 16 bits: phi(y) in Q6; high 16 bits: 1024 / sinh(y) */
static int ready = 0;

static double phi(double x) { return -log(tanh(x / 2.0)); }
static double rnd(double x) { return floor(x + 0.5); }

static void init_tables(void) {
    if (ready) return;
    for (int i = 0; i < 16; i++) {
        double w = 1 << SA, a = rnd(QP * phi((i > 0 ? w * i : 0.5) / QL)), b = rnd(QP * phi(w * (i + 1) / QL));
        TAB[i] = (uint16_t)a;
        TAS[i] = (uint16_t)rnd((a - b) / w);
        TH[i] = (uint16_t)rnd(2.0 * QP * phi(i >= 2 ? i : 2));
        TL[i] = (uint16_t)rnd(32768.0 * exp(-i / 16.0));
    }
#ifdef PHI_EXACT
    for (int x = 0; x < XMAX; x++) {
        double v = rnd(QP * phi((x > 0 ? x : 0.5) / QL));
        PHIX[x] = (int32_t)(v > 65535 ? 65535 : v);
    }
#endif
    const uint16_t *tabs[4] = {TAB, TAS, TH, TL};
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 32; i++) {
            PLANES[k][0][i] = tabs[k][i % 16] & 0xFF;
            PLANES[k][1][i] = tabs[k][i % 16] >> 8;
        }
    for (int j = 0; j < NT; j++) {
        double y = (4.0 * j + 2.0) / QP;
        double m = floor(QL * phi(y) + 0.5), k = floor(16.0 * QL / sinh(y) + 0.5);
        if (m > 32767) m = 32767;
        if (k > 65535) k = 65535;
        TINV[j] = (int32_t)((uint32_t)m | ((uint32_t)k << 16));
    }
    ready = 1;
}

/* ---- scalar reference: the same operations lane by lane */

static inline int16_t sat16(int32_t x) { return x > 32767 ? 32767 : x < -32768 ? -32768 : (int16_t)x; }
static inline uint16_t addus(uint16_t a, uint16_t b) { uint32_t s = (uint32_t)a + b; return s > 65535 ? 65535 : s; }
static inline uint16_t subus(uint16_t a, uint16_t b) { return a > b ? a - b : 0; }
static inline uint16_t absw(int16_t x) { return (uint16_t)(x < 0 ? -(int32_t)x : x); }   /* vpabsw: -32768 -> 0x8000 */

static inline uint16_t phi_ref(uint16_t a) {
    uint16_t x = a < XMAX - 1 ? a : XMAX - 1;
#ifdef PHI_EXACT
    return (uint16_t)PHIX[x];
#endif
    if (x < (2 << LB)) {
        int i = x >> SA;
        return (uint16_t)(TAB[i] - (uint16_t)((x & ((1 << SA) - 1)) * TAS[i]));
    }
    uint16_t u = (uint16_t)(((uint32_t)TH[x >> LB] * TL[(x >> SB) & 15]) >> 16);
    return (uint16_t)(u - (uint16_t)(((uint32_t)u * ((x & ((1 << SB) - 1)) << (16 - LB))) >> 16));
}

static int64_t layer_ref(const int64_t *row_ptr, const int64_t *cols, const int64_t *shifts, int64_t r,
                         const int16_t *ss, int16_t *post, int16_t *msg, int64_t z) {
    int64_t e0 = row_ptr[r], d = row_ptr[r + 1] - e0, unmet = 0;
    int16_t tb[DMAX];
    uint16_t ub[DMAX];
    for (int64_t i = 0; i < z; i++) {
        uint16_t s = 0, u1 = 0, u2 = 0;
        int16_t sg = ss[r * z + i], ps = 0;
        for (int64_t g = 0; g < d; g++) {
            int64_t e = e0 + g, v = i + shifts[e];
            if (v >= z) v -= z;
            int16_t t = sat16((int32_t)post[cols[e] * z + v] - msg[e * z + i]);
            uint16_t u = phi_ref(absw(t));
            tb[g] = t;
            ub[g] = u;
            s = addus(s, u);
            sg ^= t;
            uint16_t lo = u1 < u ? u1 : u;
            u2 = u2 > lo ? u2 : lo;
            u1 = u1 > u ? u1 : u;
        }
        uint32_t j0 = s >> 2, j1 = subus(s, u1) >> 2, j2 = subus(s, u2) >> 2;
        uint32_t t0 = (uint32_t)TINV[j0 < NT - 1 ? j0 : NT - 1];
        uint16_t mall = t0 & 0xFFFF, kq = t0 >> 16;
        uint16_t m1 = TINV[j1 < NT - 1 ? j1 : NT - 1] & 0xFFFF, m2 = TINV[j2 < NT - 1 ? j2 : NT - 1] & 0xFFFF;
        for (int64_t g = 0; g < d; g++) {
            int64_t e = e0 + g, v = i + shifts[e];
            if (v >= z) v -= z;
            int16_t t = tb[g];
            uint16_t u = ub[g];
            uint16_t mag = addus(mall, (uint16_t)(((uint32_t)u * kq) >> 16));
            mag = mag < m2 ? mag : m2;
            if (u == u2) mag = m2;
            if (u == u1) mag = m1;
            int16_t sgn = (int16_t)(t ^ sg);
            int16_t rr = sgn < 0 ? (int16_t)-(int16_t)mag : (int16_t)mag;
            msg[e * z + i] = rr;
            int16_t p = sat16((int32_t)t + rr);
            post[cols[e] * z + v] = p;
            ps ^= p;
        }
        unmet += ((ps ^ ss[r * z + i]) < 0);
    }
    return unmet;
}

/* ---- AVX2: 16 checks per vector */

/* table[idx] for 16 u16 indices, the tables' low 16 bits (or all 32 bits as two halves) */
static inline void lookup(const int32_t *table, __m256i idx, __m256i *lo8, __m256i *hi8) {
    __m256i i0 = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(idx));
    __m256i i1 = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(idx, 1));
    *lo8 = _mm256_i32gather_epi32((const int *)table, i0, 4);
    *hi8 = _mm256_i32gather_epi32((const int *)table, i1, 4);
}

static inline __m256i pack_lo16(__m256i a, __m256i b) {
    /* low 16 bits of the 8 + 8 int32 of a, b in order */
    const __m256i m = _mm256_set1_epi32(0xFFFF);
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(_mm256_and_si256(a, m), _mm256_and_si256(b, m)), 0xD8);
}

static inline __m256i pack_hi16(__m256i a, __m256i b) {
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(_mm256_srli_epi32(a, 16), _mm256_srli_epi32(b, 16)), 0xD8);
}

/* a 16-entry table of 16-bit values at 16 word indices i (< 16 where used; < 128), with
 * i8 = i << 8 */
static inline __m256i tab16(int k, __m256i i, __m256i i8) {
    const __m256i hib = _mm256_set1_epi16((short)0xFF00);
    __m256i lo = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)PLANES[k][0]), i);
    __m256i hi = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)PLANES[k][1]), i8);
    return _mm256_blendv_epi8(lo, hi, hib);
}

static inline void lookup(const int32_t *table, __m256i idx, __m256i *lo8, __m256i *hi8);

static inline __m256i phi_avx(__m256i x) {
#ifdef PHI_EXACT
    __m256i g0, g1;
    lookup(PHIX, x, &g0, &g1);
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(g0, g1), 0xD8);
#endif
    __m256i i = _mm256_srli_epi16(x, SA), i8 = _mm256_slli_epi16(i, 8);
    __m256i ua = _mm256_sub_epi16(tab16(0, i, i8),
                                  _mm256_mullo_epi16(_mm256_and_si256(x, _mm256_set1_epi16((1 << SA) - 1)), tab16(1, i, i8)));
    __m256i h = _mm256_srli_epi16(x, LB);
    __m256i l = _mm256_and_si256(_mm256_srli_epi16(x, SB), _mm256_set1_epi16(15));
    __m256i ub = _mm256_mulhi_epu16(tab16(2, h, _mm256_slli_epi16(h, 8)), tab16(3, l, _mm256_slli_epi16(l, 8)));
    ub = _mm256_sub_epi16(ub, _mm256_mulhi_epu16(ub, _mm256_slli_epi16(_mm256_and_si256(x, _mm256_set1_epi16((1 << SB) - 1)), 16 - LB)));
    return _mm256_blendv_epi8(ua, ub, _mm256_cmpgt_epi16(x, _mm256_set1_epi16((2 << LB) - 1)));
}

/* lanes k >= w of a wrapping block (w = Z - a < 16) come from the column's start */
static const int16_t IOTA[V] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static int64_t layer_avx(const int64_t *row_ptr, const int64_t *cols, const int64_t *shifts, int64_t r,
                         const int16_t *ss, int16_t *post, int16_t *msg, int64_t z) {
    int64_t e0 = row_ptr[r], d = row_ptr[r + 1] - e0, unmet = 0;
    __m256i tb[DMAX], ub[DMAX];
    int16_t *col[DMAX], *mp[DMAX], *pa[DMAX];
    int64_t sh[DMAX];
    for (int64_t g = 0; g < d; g++) {
        col[g] = post + cols[e0 + g] * z;
        mp[g] = msg + (e0 + g) * z;
        sh[g] = shifts[e0 + g];
    }
    const __m256i xmax = _mm256_set1_epi16(XMAX - 1), ntm = _mm256_set1_epi16(NT - 1);
    const __m256i one = _mm256_set1_epi16(1), iota = _mm256_loadu_si256((const __m256i *)IOTA);
    for (int64_t lane = 0; lane < z; lane += V) {
        __m256i s = _mm256_setzero_si256(), u1 = s, u2 = s, ps = s;
        __m256i sg = _mm256_loadu_si256((const __m256i *)(ss + r * z + lane));
        for (int64_t g = 0; g < d; g++) {
            int64_t a = lane + sh[g];
            a = a >= z ? a - z : a;
            int16_t *p0 = col[g] + a;
            pa[g] = p0;
            __m256i pv = _mm256_loadu_si256((const __m256i *)p0);    /* the post buffer has 16 spare at its end */
            if (__builtin_expect(a + V > z, 0)) {
                __m256i w = _mm256_set1_epi16((short)(z - a));
                pv = _mm256_blendv_epi8(pv, _mm256_loadu_si256((const __m256i *)(p0 - z)),
                                        _mm256_cmpgt_epi16(iota, _mm256_sub_epi16(w, one)));
            }
            __m256i t = _mm256_subs_epi16(pv, _mm256_loadu_si256((const __m256i *)(mp[g] + lane)));
#ifdef TIMING_NO_PHI    /* timing only, wrong values: a subtraction in place of phi */
            __m256i u = _mm256_sub_epi16(_mm256_set1_epi16(XMAX), _mm256_min_epu16(_mm256_abs_epi16(t), xmax));
#else
            __m256i u = phi_avx(_mm256_min_epu16(_mm256_abs_epi16(t), xmax));
#endif
            tb[g] = t;
            ub[g] = u;
            s = _mm256_adds_epu16(s, u);
            sg = _mm256_xor_si256(sg, t);
            u2 = _mm256_max_epu16(u2, _mm256_min_epu16(u1, u));
            u1 = _mm256_max_epu16(u1, u);
        }
        __m256i a0, a1, mall, kq, m1, m2;
#ifdef TIMING_NO_PERCHECK   /* timing only, wrong values: shifts in place of the table lookups */
        mall = _mm256_srli_epi16(s, 6); kq = _mm256_srli_epi16(s, 1);
        m1 = _mm256_srli_epi16(_mm256_subs_epu16(s, u1), 5); m2 = _mm256_srli_epi16(_mm256_subs_epu16(s, u2), 5);
        (void)a0; (void)a1; (void)ntm;
#else
        lookup(TINV, _mm256_min_epu16(_mm256_srli_epi16(s, 2), ntm), &a0, &a1);
        mall = pack_lo16(a0, a1);
        kq = pack_hi16(a0, a1);
        lookup(TINV, _mm256_min_epu16(_mm256_srli_epi16(_mm256_subs_epu16(s, u1), 2), ntm), &a0, &a1);
        m1 = pack_lo16(a0, a1);
        lookup(TINV, _mm256_min_epu16(_mm256_srli_epi16(_mm256_subs_epu16(s, u2), 2), ntm), &a0, &a1);
        m2 = pack_lo16(a0, a1);
#endif
        for (int64_t g = 0; g < d; g++) {
            __m256i t = tb[g], u = ub[g];
            __m256i mag = _mm256_min_epu16(_mm256_adds_epu16(mall, _mm256_mulhi_epu16(u, kq)), m2);
            mag = _mm256_blendv_epi8(mag, m2, _mm256_cmpeq_epi16(u, u2));
            mag = _mm256_blendv_epi8(mag, m1, _mm256_cmpeq_epi16(u, u1));
            __m256i rr = _mm256_sign_epi16(mag, _mm256_or_si256(_mm256_xor_si256(t, sg), one));
            _mm256_storeu_si256((__m256i *)(mp[g] + lane), rr);
            __m256i p = _mm256_adds_epi16(t, rr);
            int16_t *p0 = pa[g];
            int64_t w = col[g] + z - p0;
            if (__builtin_expect(w >= V, 1)) {
                _mm256_storeu_si256((__m256i *)p0, p);
            } else {
                int16_t tmp[V];
                _mm256_storeu_si256((__m256i *)tmp, p);
                for (int k = 0; k < V; k++) (k < w ? p0 : p0 - z)[k] = tmp[k];
            }
            ps = _mm256_xor_si256(ps, p);
        }
        __m256i bad = _mm256_xor_si256(ps, _mm256_loadu_si256((const __m256i *)(ss + r * z + lane)));
        unmet += __builtin_popcount(_mm256_movemask_epi8(_mm256_srai_epi16(bad, 15))) / 2;
    }
    return unmet;
}

static int hard_ok(const int64_t *row_ptr, const int64_t *cols, const int64_t *shifts, int64_t mb, int64_t z,
                   const int16_t *ss, const int16_t *post) {
    for (int64_t r = 0; r < mb; r++)
        for (int64_t i = 0; i < z; i++) {
            int par = 0;
            for (int64_t e = row_ptr[r]; e < row_ptr[r + 1]; e++) {
                int64_t v = i + shifts[e];
                if (v >= z) v -= z;
                par ^= post[cols[e] * z + v] < 0;
            }
            if (par != (ss[r * z + i] < 0)) return 0;
        }
    return 1;
}

/* Decode in place on int16 state (ss: 0 or -32768 per check, the syndrome sign); returns
 * iterations, *converged; vector: AVX2 (1) or the scalar reference (0).  -1: bad arguments. */
int64_t decode_i16_raw(const int64_t *row_ptr, const int64_t *cols, const int64_t *shifts, int64_t mb, int64_t z,
                       const int16_t *ss, int16_t *post, int16_t *msg, int64_t max_iter, int64_t stall,
                       int64_t window, int64_t horizon, int32_t *converged, int32_t vector) {
    *converged = 0;
    if (z <= 0 || z % V != 0 || max_iter < 1) return -1;
    for (int64_t r = 0; r < mb; r++) if (row_ptr[r + 1] - row_ptr[r] > DMAX) return -1;
    init_tables();
    int64_t *lows = malloc((size_t)(max_iter + 1) * sizeof(int64_t));
    int64_t best = mb * z + 1, best_it = 0, it;
    double power = window > 0 ? (double)horizon / window : 0.0;
    for (it = 1; it <= max_iter; it++) {
        int64_t unsat = 0;
        for (int64_t r = 0; r < mb; r++)
            unsat += vector ? layer_avx(row_ptr, cols, shifts, r, ss, post, msg, z)
                            : layer_ref(row_ptr, cols, shifts, r, ss, post, msg, z);
        if (unsat == 0 && hard_ok(row_ptr, cols, shifts, mb, z, ss, post)) { *converged = 1; break; }
        if (unsat < best) { best = unsat; best_it = it; }
        else if (it - best_it >= stall) break;
        if (window > 0) {
            lows[it] = best;
            if (it > window && best > 0 && best * pow((double)best / lows[it - window], power) >= 1.0) break;
        }
    }
    if (it > max_iter) it = max_iter;
    free(lows);
    return it;
}

static void to_q(const float *x, int16_t *y, int64_t n) {
    /* round half even (MXCSR default), saturate at +-32767 */
    int64_t i = 0;
    const __m256 q = _mm256_set1_ps((float)QL);
    const __m256i lo = _mm256_set1_epi16(-32767);
    for (; i + V <= n; i += V) {
        __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), q));
        __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), q));
        __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_max_epi16(p, lo));
    }
    for (; i < n; i++) {
        float v = nearbyintf(x[i] * (float)QL);
        y[i] = v > 32767.0f ? 32767 : v < -32767.0f ? -32767 : (int16_t)v;
    }
}

static void from_q(const int16_t *y, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)y[i] * (float)(1.0 / QL);
}

/* int16 state kept between calls (fresh pages would cost a page fault per 4 KiB on each
 * call): one set, so not for concurrent calls */
static int16_t *buf = 0;
static int64_t buf_n = 0;

/* The signature of _ldpc_core.decode on float32 state: converts post and msg to Q6 (rounded,
 * saturated at +-32767 / 64), decodes, converts back (exact: every Q6 value is a float32).
 * Not reentrant (one buffer set). */
int64_t decode_i16(const int64_t *row_ptr, const int64_t *cols, const int64_t *shifts, int64_t mb, int64_t z,
                   const float *ssign, float *post, float *msg, int64_t n, int64_t max_iter, int64_t stall,
                   int64_t window, int64_t horizon, int32_t *converged, int32_t vector) {
    int64_t edges = row_ptr[mb] * z, m = mb * z, need = n + edges + m + 3 * 16;
    if (need > buf_n) {
        free(buf);
        buf = aligned_alloc(64, (size_t)((need * 2 + 63) / 64 * 64));
        buf_n = need;
    }
    int16_t *p16 = buf, *m16 = p16 + (n + 16) / 16 * 16, *s16 = m16 + (edges + 16) / 16 * 16;
    to_q(post, p16, n);
    to_q(msg, m16, edges);
    for (int64_t i = 0; i < m; i++) s16[i] = ssign[i] < 0 ? -32768 : 0;
    int64_t it = decode_i16_raw(row_ptr, cols, shifts, mb, z, s16, p16, m16, max_iter, stall, window, horizon,
                                converged, vector);
    if (it > 0) {
        from_q(p16, post, n);
        from_q(m16, msg, edges);
    }
    return it;
}
