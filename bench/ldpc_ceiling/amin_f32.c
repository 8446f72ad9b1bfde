/* Calibration: the "amin" layered update of controller/postprocess/_ldpc_core.py in C with
 * AVX2 intrinsics, same data layout (post float32 [n], msg float32 entry-major e*Z + lane,
 * ebuf (row degree) x Z, per-check state block-major (Z/8, 10, 8)), same operation order,
 * same two-circulant pass structure (PAIR = 2), same stopping rules as _ldpc_core.decode.
 * A measurement rig (bench/ldpc_ceiling/README.md), not used by controller/.
 *
 * gcc -O3 -mavx2 -mfma -shared -fPIC amin_f32.c -o amin_f32.so
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define W 8
#define ROWS 10
enum { R_NUM, R_DEN, R_SG, R_PS, R_E1, R_E2, R_M1, R_M2, R_MALL, R_K };

static const float TINY = 1e-18f;
static const float LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;
static const float E1 = 0.6931434427617168f, E2 = 0.24017925387931624f, E3 = 0.055298132541318185f,
                   E4 = 0.009209750585689708f, E5 = 0.0009475275410969625f;
static const float L1 = 1.4426995484690364f, L2 = -0.7213615947600772f, L3 = 0.4804812580083578f,
                   L4 = -0.3595008384879631f, L5 = 0.2975418989050461f, L6 = -0.2680125499094717f,
                   L7 = 0.16372138388881957f;

#define C(x) _mm256_set1_ps(x)
/* Python max / min as numba lowers them: y if y > x else x */
static inline __m256 pmax(__m256 x, __m256 y) { return _mm256_blendv_ps(x, y, _mm256_cmp_ps(y, x, _CMP_GT_OQ)); }
static inline __m256 pmin(__m256 x, __m256 y) { return _mm256_blendv_ps(x, y, _mm256_cmp_ps(y, x, _CMP_LT_OQ)); }
static inline __m256 vabs(__m256 x) { return _mm256_andnot_ps(C(-0.0f), x); }
static inline __m256 copysign8(__m256 mag, __m256 s) {
    __m256 m = C(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(m, mag), _mm256_and_ps(m, s));
}

static inline __m256 exp_neg(__m256 a) {
    __m256 v = pmax(_mm256_mul_ps(a, C(-LOG2E)), C(-100.0f));
    __m256i i = _mm256_cvttps_epi32(v);
    __m256 f = _mm256_sub_ps(v, _mm256_cvtepi32_ps(i));
    __m256 f2 = _mm256_mul_ps(f, f);
    __m256 p = _mm256_add_ps(_mm256_add_ps(C(1.0f), _mm256_mul_ps(f, C(E1))),
        _mm256_mul_ps(f2, _mm256_add_ps(_mm256_add_ps(C(E2), _mm256_mul_ps(f, C(E3))),
                                        _mm256_mul_ps(f2, _mm256_add_ps(C(E4), _mm256_mul_ps(f, C(E5)))))));
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(i, 23)));
}

static inline __m256 ln8(__m256 w) {
    __m256i bits = _mm256_castps_si256(w);
    __m256 k = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srai_epi32(bits, 23), _mm256_set1_epi32(127)));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFF)),
                                                   _mm256_set1_epi32(0x3F800000)));
    __m256 big = _mm256_cmp_ps(m, C(1.4142135623730951f), _CMP_GT_OQ);
    m = _mm256_mul_ps(m, _mm256_blendv_ps(C(1.0f), C(0.5f), big));
    k = _mm256_add_ps(k, _mm256_and_ps(big, C(1.0f)));
    __m256 x = _mm256_sub_ps(m, C(1.0f));
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 lo = _mm256_add_ps(_mm256_add_ps(C(L1), _mm256_mul_ps(x, C(L2))),
                              _mm256_mul_ps(x2, _mm256_add_ps(C(L3), _mm256_mul_ps(x, C(L4)))));
    __m256 hi = _mm256_add_ps(_mm256_add_ps(C(L5), _mm256_mul_ps(x, C(L6))), _mm256_mul_ps(x2, C(L7)));
    __m256 lg = _mm256_mul_ps(x, _mm256_add_ps(lo, _mm256_mul_ps(_mm256_mul_ps(x2, x2), hi)));
    return _mm256_mul_ps(_mm256_add_ps(lg, k), C(LN2));
}

static inline __m256 atanh2(__m256 a, __m256 b, __m256 *wout) {
    __m256 hi = _mm256_add_ps(a, b);
    __m256 w = _mm256_div_ps(hi, pmax(_mm256_sub_ps(a, b), _mm256_mul_ps(hi, C(0x1p-25f))));
    if (wout) *wout = w;
    return ln8(w);
}

static inline __m256 rot_load(const float *post, int64_t col0, int64_t a, int64_t z) {
    if (a + W <= z) return _mm256_loadu_ps(post + col0 + a);
    float t[W];
    for (int k = 0; k < W; k++) { int64_t i = a + k; if (i >= z) i -= z; t[k] = post[col0 + i]; }
    return _mm256_loadu_ps(t);
}

static inline void rot_store(__m256 v, float *post, int64_t col0, int64_t a, int64_t z) {
    if (a + W <= z) { _mm256_storeu_ps(post + col0 + a, v); return; }
    float t[W];
    _mm256_storeu_ps(t, v);
    for (int k = 0; k < W; k++) { int64_t i = a + k; if (i >= z) i -= z; post[col0 + i] = t[k]; }
}

typedef struct { int64_t col0, s, m0, e0; } circ_t;

static void gather_am(float *post, float *msg, float *ebuf, float *st, int64_t z, const circ_t *cs, int nc) {
    for (int64_t lane = 0; lane < z; lane += W) {
        float *sb = st + lane * ROWS;
        __m256 num = _mm256_loadu_ps(sb + R_NUM * W), den = _mm256_loadu_ps(sb + R_DEN * W);
        __m256 sg = _mm256_loadu_ps(sb + R_SG * W), e1 = _mm256_loadu_ps(sb + R_E1 * W);
        __m256 e2 = _mm256_loadu_ps(sb + R_E2 * W);
        for (int g = 0; g < nc; g++) {
            int64_t a = lane + cs[g].s; if (a >= z) a -= z;
            float *mp = msg + cs[g].m0 + lane;
            __m256 t = _mm256_sub_ps(rot_load(post, cs[g].col0, a, z), _mm256_loadu_ps(mp));
            _mm256_storeu_ps(mp, t);
            __m256 e = exp_neg(vabs(t));
            _mm256_storeu_ps(ebuf + cs[g].e0 + lane, e);
            num = _mm256_mul_ps(num, pmax(_mm256_sub_ps(C(1.0f), e), C(TINY)));
            den = _mm256_mul_ps(den, _mm256_add_ps(C(1.0f), e));
            sg = copysign8(C(1.0f), _mm256_mul_ps(sg, t));
            e2 = _mm256_max_ps(e2, _mm256_min_ps(e1, e));
            e1 = _mm256_max_ps(e1, e);
        }
        _mm256_storeu_ps(sb + R_NUM * W, num); _mm256_storeu_ps(sb + R_DEN * W, den);
        _mm256_storeu_ps(sb + R_SG * W, sg); _mm256_storeu_ps(sb + R_E1 * W, e1);
        _mm256_storeu_ps(sb + R_E2 * W, e2);
    }
}

static void row_am(float *st, int64_t z) {
    for (int64_t lane = 0; lane < z; lane += W) {
        float *sb = st + lane * ROWS;
        __m256 a = _mm256_loadu_ps(sb + R_DEN * W), b = _mm256_loadu_ps(sb + R_NUM * W);
        for (int q = 0; q < 2; q++) {
            __m256 x = _mm256_loadu_ps(sb + (q ? R_E2 : R_E1) * W);
            __m256 m = atanh2(_mm256_mul_ps(a, pmax(_mm256_sub_ps(C(1.0f), x), C(TINY))),
                              _mm256_mul_ps(b, _mm256_add_ps(C(1.0f), x)), 0);
            _mm256_storeu_ps(sb + (q ? R_M2 : R_M1) * W, m);
        }
        __m256 w, m = atanh2(a, b, &w);
        _mm256_storeu_ps(sb + R_MALL * W, m);
        _mm256_storeu_ps(sb + R_K * W, _mm256_sub_ps(w, _mm256_div_ps(C(1.0f), w)));
    }
}

static void scatter_am(float *post, float *msg, const float *ebuf, float *st, int64_t z, const circ_t *cs, int nc) {
    for (int64_t lane = 0; lane < z; lane += W) {
        float *sb = st + lane * ROWS;
        __m256 m1 = _mm256_loadu_ps(sb + R_M1 * W), m2 = _mm256_loadu_ps(sb + R_M2 * W);
        __m256 mall = _mm256_loadu_ps(sb + R_MALL * W), kk = _mm256_loadu_ps(sb + R_K * W);
        __m256 x1 = _mm256_loadu_ps(sb + R_E1 * W), x2 = _mm256_loadu_ps(sb + R_E2 * W);
        __m256 sg = _mm256_loadu_ps(sb + R_SG * W), ps = _mm256_loadu_ps(sb + R_PS * W);
        for (int g = 0; g < nc; g++) {
            int64_t a = lane + cs[g].s; if (a >= z) a -= z;
            float *mp = msg + cs[g].m0 + lane;
            __m256 t = _mm256_loadu_ps(mp);
            __m256 e = _mm256_loadu_ps(ebuf + cs[g].e0 + lane);
            __m256 mag = pmin(_mm256_add_ps(mall, _mm256_mul_ps(kk, e)), m2);
            mag = _mm256_blendv_ps(mag, m2, _mm256_cmp_ps(e, x2, _CMP_EQ_OQ));
            mag = _mm256_blendv_ps(mag, m1, _mm256_cmp_ps(e, x1, _CMP_EQ_OQ));
            __m256 r = copysign8(mag, _mm256_mul_ps(sg, t));
            _mm256_storeu_ps(mp, r);
            __m256 p = _mm256_add_ps(t, r);
            rot_store(p, post, cs[g].col0, a, z);
            ps = copysign8(C(1.0f), _mm256_mul_ps(ps, p));
        }
        _mm256_storeu_ps(sb + R_PS * W, ps);
    }
}

static int64_t layer_am(const int64_t *row_ptr, const int64_t *cols, const int64_t *shifts, int64_t r,
                        const float *ssign, float *post, float *msg, float *ebuf, float *st, int64_t z) {
    int64_t e0 = row_ptr[r], d = row_ptr[r + 1] - e0, off = r * z;
    for (int64_t lane = 0; lane < z; lane += W) {
        float *sb = st + lane * ROWS;
        _mm256_storeu_ps(sb + R_NUM * W, C(1.0f)); _mm256_storeu_ps(sb + R_DEN * W, C(1.0f));
        _mm256_storeu_ps(sb + R_PS * W, C(1.0f)); _mm256_storeu_ps(sb + R_E1 * W, C(0.0f));
        _mm256_storeu_ps(sb + R_E2 * W, C(0.0f));
        _mm256_storeu_ps(sb + R_SG * W, _mm256_loadu_ps(ssign + off + lane));
    }
    circ_t cs[2];
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) row_am(st, z);
        for (int64_t j = 0; j < d; j += 2) {
            int nc = j + 2 <= d ? 2 : 1;
            for (int g = 0; g < nc; g++) {
                int64_t e = e0 + j + g;
                cs[g] = (circ_t){cols[e] * z, shifts[e], e * z, (j + g) * z};
            }
            if (pass == 0) gather_am(post, msg, ebuf, st, z, cs, nc);
            else scatter_am(post, msg, ebuf, st, z, cs, nc);
        }
    }
    int64_t unmet = 0;
    for (int64_t lane = 0; lane < z; lane += W) {
        __m256 prod = _mm256_mul_ps(_mm256_loadu_ps(st + lane * ROWS + R_PS * W), _mm256_loadu_ps(ssign + off + lane));
        unmet += __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(prod, C(0.0f), _CMP_LT_OQ)));
    }
    return unmet;
}

static int hard_ok(const int64_t *row_ptr, const int64_t *cols, const int64_t *shifts, int64_t mb, int64_t z,
                   const float *ssign, const float *post) {
    for (int64_t r = 0; r < mb; r++)
        for (int64_t i = 0; i < z; i++) {
            int par = 0;
            for (int64_t e = row_ptr[r]; e < row_ptr[r + 1]; e++) {
                int64_t v = i + shifts[e]; if (v >= z) v -= z;
                par ^= post[cols[e] * z + v] < 0;
            }
            if (par != (ssign[r * z + i] < 0)) return 0;
        }
    return 1;
}

/* _ldpc_core.decode(..., approx=True): returns iterations, *converged */
int64_t decode_f32(const int64_t *row_ptr, const int64_t *cols, const int64_t *shifts, int64_t mb, int64_t z,
                   const float *ssign, float *post, float *msg, int64_t max_iter, int64_t stall,
                   int64_t window, int64_t horizon, int32_t *converged) {
    int64_t dmax = 0;
    for (int64_t r = 0; r < mb; r++) if (row_ptr[r + 1] - row_ptr[r] > dmax) dmax = row_ptr[r + 1] - row_ptr[r];
    float *ebuf = aligned_alloc(64, (size_t)dmax * z * sizeof(float));
    float *st = aligned_alloc(64, (size_t)z * ROWS * sizeof(float));
    int64_t *lows = malloc((size_t)(max_iter + 1) * sizeof(int64_t));
    int64_t best = mb * z + 1, best_it = 0, it;
    double power = window > 0 ? (double)horizon / window : 0.0;
    *converged = 0;
    for (it = 1; it <= max_iter; it++) {
        int64_t unsat = 0;
        for (int64_t r = 0; r < mb; r++) unsat += layer_am(row_ptr, cols, shifts, r, ssign, post, msg, ebuf, st, z);
        if (unsat == 0 && hard_ok(row_ptr, cols, shifts, mb, z, ssign, post)) { *converged = 1; break; }
        if (unsat < best) { best = unsat; best_it = it; }
        else if (it - best_it >= stall) break;
        if (window > 0) {
            lows[it] = best;
            if (it > window && best > 0 && best * pow((double)best / lows[it - window], power) >= 1.0) break;
        }
    }
    if (it > max_iter) it = max_iter;
    free(ebuf); free(st); free(lows);
    return it;
}
