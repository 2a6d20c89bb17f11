/* Instantiates the templated kernels for float and double, with the runtime
 * pieces they share: BLAS pointers, the thread count and the OpenMP driver. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "fnn.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FNN_NO_CLONES)
/* One portable build, with AVX2+FMA and AVX-512 variants of each hot loop picked
 * at load time: the flags alone decide whether these loops vectorize. */
#define FNN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FNN_CLONES
#endif

static fnn_sgemm_t p_sgemm;
static fnn_dgemm_t p_dgemm;
static fnn_sgemv_t p_sgemv;
static fnn_dgemv_t p_dgemv;
static int fnn_threads = 1;
static int fnn_pool_started = 0;

void fnn_set_blas(fnn_sgemm_t s, fnn_dgemm_t d, fnn_sgemv_t sv, fnn_dgemv_t dv)
{
    p_sgemm = s; p_dgemm = d; p_sgemv = sv; p_dgemv = dv;
}

void fnn_set_threads(int n) { fnn_threads = n < 1 ? 1 : n; }
int fnn_get_threads(void) { return fnn_threads; }

int fnn_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fnn_openmp_pool_started(void) { return fnn_pool_started; }

int fnn_openmp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int fnn_labels_in_range(int64_t n, const int64_t *labels, int64_t C)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= (labels[i] < 0) | (labels[i] >= C);
    return !bad;
}

/* Below this much work (in rough flops) a fork-join costs more than it saves. */
#define FNN_PAR_MIN 131072.0
/* A GEMM multiply-add is cheaper than the elementwise "flop" above: split GEMMs
 * only from ~0.5M multiply-adds (~10 us on one core). */
#define FNN_GEMM_PER_FLOP 4.0
static inline int fnn_threads_for(double work)
{
#ifdef _OPENMP
    return work < FNN_PAR_MIN ? 1 : fnn_threads;
#else
    (void)work;
    return 1;
#endif
}

/* How a GEMM is cut into blocks. One call is the reference: at one thread a
 * product is always a single BLAS call, so a cut never costs a serial run
 * anything. With more threads it may be cut into row or column blocks, but only
 * after gemm_plan (fnn_template.h) has checked, once per shape (at its second
 * call), that the blocks give the very bits of the single call (on data whose
 * K-sums round differently in almost any other order), and timed that the cut
 * beats the single call. So results never
 * depend on the thread count, on the cut, or on the timing noise that chose it.
 * The check is needed: on OpenBLAS 0.3.30, row blocks at multiples of 24 rows
 * kept the bits on every kernel set tried, but Haswell's sgemm rounds a column
 * block differently from the whole (its dgemm does not). */
typedef struct { int dim, parts; } fnn_plan;   /* dim 0: rows, 1: columns */
static inline int fnn_gemm_big(double macs) { return macs / FNN_GEMM_PER_FLOP >= FNN_PAR_MIN; }
/* Tests force a cut (dim 0/1, or 2 for one call) to compare its bits with one call. */
static int fnn_force_dim = -1, fnn_force_parts = 1;
void fnn_set_split(int dim, int parts) { fnn_force_dim = dim; fnn_force_parts = parts < 1 ? 1 : parts; }

/* Plans are kept for the process in a hash table; a server fed every batch size
 * from 1 to 1024 fills a quarter of it with an MLP's three layers. Beyond 3/4
 * full, new shapes run as one call rather than pay for a check on every call. */
#define FNN_PLAN_SLOTS 8192
typedef struct { int key[10]; fnn_plan plan; int planned; } fnn_plan_slot;   /* key[0] == 0: empty */
static fnn_plan_slot fnn_plans[FNN_PLAN_SLOTS];
static int fnn_nplans = 0;
static int fnn_plan_stats[3];   /* plans made: one call, rows, columns */
void fnn_split_stats(int *out) { for (int i = 0; i < 3; i++) out[i] = fnn_plan_stats[i]; }
static fnn_plan_slot *fnn_plan_slot_of(const int *key)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 10; i++) h = (h ^ (uint32_t)key[i]) * 16777619u;
    for (uint32_t i = h & (FNN_PLAN_SLOTS - 1);; i = (i + 1) & (FNN_PLAN_SLOTS - 1))
        if (!fnn_plans[i].key[0] || !memcmp(fnn_plans[i].key, key, sizeof fnn_plans[i].key))
            return fnn_plans + i;
}
/* 1: *plan is the plan; 0: plan now (and fnn_plan_add it). A shape's first call
 * runs as one call and is only remembered: a product run once (a fresh process
 * predicting once) would not repay the check, which costs about three calls. */
static int fnn_plan_find(const int *key, fnn_plan *plan)
{
    fnn_plan_slot *slot = fnn_plan_slot_of(key);
    plan->dim = 0;
    plan->parts = 1;
    if (slot->key[0]) {
        if (!slot->planned) return 0;
        *plan = slot->plan;
        return 1;
    }
    if (fnn_nplans < FNN_PLAN_SLOTS / 4 * 3) {
        memcpy(slot->key, key, sizeof slot->key);
        slot->planned = 0;
        fnn_nplans++;
    }
    return 1;
}
static void fnn_plan_add(const int *key, fnn_plan plan)
{
    fnn_plan_slot *slot = fnn_plan_slot_of(key);
    fnn_plan_stats[plan.parts < 2 ? 0 : 1 + plan.dim]++;
    slot->plan = plan;
    slot->planned = 1;
}
static inline double fnn_now(void)
{
#ifdef _OPENMP
    return omp_get_wtime();
#else
    return 0;
#endif
}

static inline int fnn_parts_threads(int parts)
{
#ifdef _OPENMP
    return parts < fnn_threads ? parts : fnn_threads;
#else
    (void)parts;
    return 1;
#endif
}

static inline int64_t fnn_chunk(int64_t n, int nt) { return (n + nt - 1) / nt; }
/* Chunks that start on a 64-byte boundary keep each thread's vector loop aligned. */
static inline int64_t fnn_chunk_aligned(int64_t n, int nt)
{
    int64_t c = (n + nt - 1) / nt;
    return nt == 1 ? n : (c + 15) & ~(int64_t)15;
}
/* Bounds of block t of `parts` along rows (dim 0) or columns (dim 1). Blocks
 * start at multiples of 24 rows or 16 columns (64 bytes): measured on OpenBLAS
 * 0.3.30, cuts off the micro-kernels' unroll (12 rows for Haswell sgemm, 8 for
 * Sandybridge and Nehalem) change the bits of one call, aligned ones do not. */
#define FNN_CUT_ROWS 24
static inline void fnn_block(int dim, int parts, int64_t t, int M, int N, int *lo, int *hi)
{
    int64_t size = dim ? N : M, cs = fnn_chunk(size, parts);
    if (parts > 1) cs = dim ? (cs + 15) & ~(int64_t)15 : (cs + FNN_CUT_ROWS - 1) / FNN_CUT_ROWS * FNN_CUT_ROWS;
    int64_t l = t * cs, h = l + cs;
    *lo = (int)(l < size ? l : size);
    *hi = (int)(h < size ? h : size);
}
/* Can `parts` blocks along dim all be non-empty? A one-row block would go to
 * gemv, whose sums run in another order than gemm's. */
static inline int fnn_cut_ok(int dim, int parts, int M, int N)
{
    int lo, hi;
    if (parts < 2) return 0;
    fnn_block(dim, parts, parts - 1, M, N, &lo, &hi);
    return hi - lo >= (dim || M == 1 ? 1 : 2);
}

#define FNN_NCHUNK 64
static inline double fnn_sum_parts(const double *part)
{
    double s = 0;
    for (int i = 0; i < FNN_NCHUNK; i++) s += part[i];
    return s;
}

static inline uint64_t fnn_hash64(uint64_t seed, uint64_t i)
{
    /* splitmix64 finalizer over a counter: a stateless, splittable stream */
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Run BODY for VAR in [0, COUNT), on NT OpenMP threads when NT > 1. A serial
 * call never enters OpenMP, so a forked child that runs serially cannot hang. */
#ifdef _OPENMP
#define FNN_PAR_FOR(NT, VAR, COUNT, ...)                                              \
    do {                                                                              \
        int fnn_nt_ = (NT);                                                           \
        int64_t fnn_cnt_ = (COUNT);                                                   \
        if (fnn_nt_ > 1) {                                                            \
            fnn_pool_started = 1;                                                     \
            _Pragma("omp parallel for num_threads(fnn_nt_) schedule(static)")         \
            for (int64_t VAR = 0; VAR < fnn_cnt_; VAR++) __VA_ARGS__                  \
        } else {                                                                      \
            for (int64_t VAR = 0; VAR < fnn_cnt_; VAR++) __VA_ARGS__                  \
        }                                                                             \
    } while (0)
#else
#define FNN_PAR_FOR(NT, VAR, COUNT, ...)                                              \
    do {                                                                              \
        (void)(NT);                                                                   \
        int64_t fnn_cnt_ = (COUNT);                                                   \
        for (int64_t VAR = 0; VAR < fnn_cnt_; VAR++) __VA_ARGS__                      \
    } while (0)
#endif

/* The elementwise pattern: N elements in one chunk per thread (CHUNK is fnn_chunk
 * or fnn_chunk_aligned); the body sees its chunk as [LO, LO + LEN), LEN may be 0. */
#define FNN_PAR_CHUNKS(NT, N, CHUNK, LO, LEN, ...)                                    \
    do {                                                                              \
        int fnn_pc_nt_ = (NT);                                                        \
        int64_t fnn_pc_n_ = (N), fnn_pc_cs_ = CHUNK(fnn_pc_n_, fnn_pc_nt_);           \
        FNN_PAR_FOR(fnn_pc_nt_, fnn_pc_c_, fnn_pc_nt_, {                              \
            int64_t LO = fnn_pc_c_ * fnn_pc_cs_;                                      \
            int64_t LEN = LO >= fnn_pc_n_ ? 0                                         \
                : (fnn_pc_n_ - LO < fnn_pc_cs_ ? fnn_pc_n_ - LO : fnn_pc_cs_);        \
            __VA_ARGS__                                                               \
        });                                                                           \
    } while (0)

/* float32 exp and tanh that the compiler can vectorize (libm's are scalar calls,
 * ~40x slower than a SIMD loop): Cephes' range reduction and polynomials, within
 * a few ulp of expf/tanhf. exp's input is clamped to [-87.3, 88]: every caller
 * takes exp of a value <= 0, except tanh, which saturates long before. */
static inline float fnn_expf(float x)
{
    /* Written so that every clone vectorizes: selects, not fminf (NaN rules) or
     * int conversions; floor and 2^n by float "magic number" arithmetic. */
    x = x < -87.33f ? -87.33f : x;
    x = x > 88.0f ? 88.0f : x;
    float fx = x * 1.44269504088896341f + 0.5f;
    float r = (fx + 12582912.0f) - 12582912.0f;  /* round to nearest (|fx| < 2^22) */
    float fl = r > fx ? r - 1.0f : r;            /* floor */
    x = x - fl * 0.693359375f - fl * -2.12194440e-4f;
    float z = x * x;
    float y = (((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x
                 + 4.1665795894e-2f) * x + 1.6666665459e-1f) * x + 5.0000001201e-1f) * z + x + 1.0f;
    float b = fl + (127.0f + 8388608.0f);        /* low mantissa bits = fl + 127 */
    uint32_t bits;
    memcpy(&bits, &b, sizeof bits);
    bits = (bits - 0x4B000000u) << 23;           /* ... moved into the exponent: 2^fl */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

static inline float fnn_tanhf(float x)
{
    float a = fabsf(x), z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
                    + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float big = copysignf(1.0f - 2.0f / (fnn_expf(2.0f * a) + 1.0f), x);
    return a < 0.625f ? small : big;
}

/* float32 erf that vectorizes (libm's erff is a scalar call and made exact GELU
 * and its backward ~30% of a transformer's training step): below 1, Cephes'
 * odd polynomial with its leading x kept apart (so the rounding of the sum stays
 * small); above, erfc(a) = t exp(-a^2 + P(t)), t = 1/(1 + a/2) (Numerical Recipes'
 * erfcc, relative error < 1.2e-7). Within 1.6 ulp of erf; NaN stays NaN. */
static inline float fnn_erff(float x)
{
    float a = fabsf(x), z = x * x;
    float small = x + x * ((((((7.853861353153693e-5f * z - 8.010193625184903e-4f) * z
                               + 5.188327685732524e-3f) * z - 2.685381193529856e-2f) * z
                             + 1.128358514861418e-1f) * z - 3.761262582423300e-1f) * z
                           + 1.28379165726710e-1f);
    float t = 1.0f / (1.0f + 0.5f * a);
    float p = t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f
              + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f
              + t * 0.17087277f))))))));
    float big = copysignf(1.0f - t * fnn_expf(p - z - 1.26551223f), x);
    return a < 1.0f ? small : big;
}

#define FNN_T float
#define FNN_S(name) name##_f32
#define EXP fnn_expf
#define LOG logf
#define LOG1P log1pf
#define TANH fnn_tanhf
#define ERF fnn_erff
#define SQRT sqrtf
#define UINT_T uint32_t
#define EXP_MASK 0x7f800000u
#define SELF_GEMM p_sgemm
#define SELF_GEMV p_sgemv
#include "fnn_template.h"
#undef FNN_T
#undef FNN_S
#undef EXP
#undef LOG
#undef LOG1P
#undef TANH
#undef ERF
#undef SQRT
#undef UINT_T
#undef EXP_MASK
#undef SELF_GEMM
#undef SELF_GEMV

#define FNN_T double
#define FNN_S(name) name##_f64
#define EXP exp
#define LOG log
#define LOG1P log1p
#define TANH tanh
#define ERF erf
#define SQRT sqrt
#define UINT_T uint64_t
#define EXP_MASK 0x7ff0000000000000ull
#define SELF_GEMM p_dgemm
#define SELF_GEMV p_dgemv
#include "fnn_template.h"
