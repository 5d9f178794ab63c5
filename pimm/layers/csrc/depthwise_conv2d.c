/* Depthwise 2-D convolution (one filter per channel, NCHW, float32) for CPUs: forward and backward.
 *
 * Paddle 3.3's CPU kernel runs a depthwise convolution as im2col plus a tiny matrix product per
 * channel and image, several times slower than a direct loop. Here each channel plane is first
 * copied into a zero-padded scratch plane, split into `stride` column phases so that every tap
 * reads consecutive floats; then 8 outputs at a time are accumulated in one vector register over
 * all taps (one load and one multiply-add per tap). Work is split over channel planes with
 * OpenMP; the caller passes the thread count.
 *
 *   input gradient, stride 1: the forward loop on the padded output gradient with the filter
 *                             rotated by 180 degrees ("full" correlation);
 *   input gradient, stride 2: scattered tap by tap into the input rows;
 *   filter gradient:          per filter row, one vector accumulator per tap column, summed over
 *                             the plane, then over images in double precision.
 *
 * Built on demand by pimm/layers/native.py and called through ctypes with raw pointers to
 * contiguous tensors.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int64_t i64;
typedef float vec8 __attribute__((vector_size(32)));
enum { LANES = 8, MAX_TAPS = 256, MAX_WIDTH = 16 };

static inline vec8 load8(const float *p) { vec8 v; memcpy(&v, p, sizeof v); return v; }
static inline vec8 splat8(float a) { return (vec8){a, a, a, a, a, a, a, a}; }
static inline i64 round_up(i64 a, i64 b) { return (a + b - 1) / b * b; }
static inline i64 ceil_div(i64 a, i64 b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
static inline i64 floor_div(i64 a, i64 b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

typedef struct {
    i64 n, c, h, w;        /* input */
    i64 kh, kw;            /* filter */
    i64 sh, sw, ph, pw;    /* stride, zero padding */
    i64 oh, ow;            /* output */
} conv_shape;

/* A zero-padded copy of one plane, its columns split into `phases` (the stride): row r, phase q,
 * slot t holds padded column t * phases + q. Slack slots at the end of each row are zeros, so
 * vector loads may run past the last column. */
typedef struct {
    float *data;
    i64 rows, phases, pitch;
} padded_plane;

static i64 padded_pitch(i64 w, i64 pad, i64 kw, i64 phases) {
    return round_up(ceil_div(w + 2 * pad, phases) + kw / phases + 2 * LANES, LANES);
}

/* Every other float of src (src[0], src[2], ...) into dst[0 .. count). */
static void take_even(float *dst, const float *src, i64 count) {
    i64 k = 0;
    /* the vector loop reads src[2k .. 2k + 15]: stop where that would pass src[2 * count - 1] */
    for (; 2 * k + 2 * LANES <= 2 * count - 1; k += LANES) {
        const vec8 a = load8(src + 2 * k), b = load8(src + 2 * k + LANES);
#if defined(__clang__) || __GNUC__ >= 12
        const vec8 even = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14);
#else
        typedef int32_t lane_index __attribute__((vector_size(32)));
        const vec8 even = __builtin_shuffle(a, b, (lane_index){0, 2, 4, 6, 8, 10, 12, 14});
#endif
        memcpy(dst + k, &even, sizeof even);
    }
    for (; k < count; ++k) dst[k] = src[2 * k];
}

static void pad_plane(padded_plane *dst, const float *src, i64 h, i64 w, i64 pad_top, i64 pad_left) {
    const i64 phases = dst->phases, row_floats = phases * dst->pitch;
    const i64 below = dst->rows - pad_top - h;
    memset(dst->data, 0, (size_t)(pad_top * row_floats) * sizeof(float));
    memset(dst->data + (pad_top + h) * row_floats, 0, (size_t)(below * row_floats) * sizeof(float));
    for (i64 y = 0; y < h; ++y) {
        const float *srow = src + y * w;
        float *base = dst->data + (y + pad_top) * row_floats;
        for (i64 q = 0; q < phases; ++q) {
            /* slot t holds padded column t * phases + q, the source column t * phases + q - pad_left */
            float *phase = base + q * dst->pitch;
            i64 first = ceil_div(pad_left - q, phases);
            first = first > 0 ? first : 0;
            const i64 x0 = first * phases + q - pad_left;
            const i64 count = x0 < w ? (w - x0 + phases - 1) / phases : 0;
            memset(phase, 0, (size_t)first * sizeof(float));
            if (phases == 1) memcpy(phase + first, srow + x0, (size_t)count * sizeof(float));
            else if (phases == 2) take_even(phase + first, srow + x0, count);
            else for (i64 k = 0; k < count; ++k) phase[first + k] = srow[x0 + k * phases];
            memset(phase + first + count, 0, (size_t)(dst->pitch - first - count) * sizeof(float));
        }
    }
}

/* out[y][x] = sum_ij filt[i][j] * padded[y * sh + i][x * sw + j], for an oh x ow output.
 * Inlined into callers with constant filter sizes, so the common ones get unrolled tap loops. */
static inline __attribute__((always_inline)) void correlate_plane_k(
        const padded_plane *in, const float *filt, const i64 kh, const i64 kw, i64 sh, i64 oh, i64 ow,
        float *out) {
    const i64 sw = in->phases;
    vec8 taps[MAX_TAPS];
    i64 offset[MAX_WIDTH];
    for (i64 t = 0; t < kh * kw; ++t) taps[t] = splat8(filt[t]);
    for (i64 j = 0; j < kw; ++j) offset[j] = (j % sw) * in->pitch + j / sw;
    for (i64 y = 0; y < oh; ++y) {
        float *orow = out + y * ow;
        for (i64 x0 = 0; x0 < ow; x0 += LANES) {
            vec8 acc = splat8(0.0f);
            for (i64 i = 0; i < kh; ++i) {
                const float *row = in->data + (y * sh + i) * sw * in->pitch + x0;
                const vec8 *tap = taps + i * kw;
                for (i64 j = 0; j < kw; ++j) acc += tap[j] * load8(row + offset[j]);
            }
            if (ow - x0 >= LANES) memcpy(orow + x0, &acc, sizeof acc);  /* one vector store */
            else memcpy(orow + x0, &acc, (size_t)(ow - x0) * sizeof(float));
        }
    }
}

static void correlate_plane(const padded_plane *in, const float *filt, i64 kh, i64 kw, i64 sh,
                            i64 oh, i64 ow, float *out) {
    if (kh == 3 && kw == 3) correlate_plane_k(in, filt, 3, 3, sh, oh, ow, out);
    else if (kh == 5 && kw == 5) correlate_plane_k(in, filt, 5, 5, sh, oh, ow, out);
    else if (kh == 7 && kw == 7) correlate_plane_k(in, filt, 7, 7, sh, oh, ow, out);
    else correlate_plane_k(in, filt, kh, kw, sh, oh, ow, out);
}

static float *scratch(i64 floats) {
    return (float *)malloc((size_t)(floats > 0 ? floats : 1) * sizeof(float));
}

void pimm_depthwise_conv2d_forward(const float *x, const float *weight, float *out, i64 n, i64 c,
                                   i64 h, i64 w, i64 kh, i64 kw, i64 sh, i64 sw, i64 ph, i64 pw,
                                   i64 oh, i64 ow, int threads) {
    const i64 planes = n * c, rows = h + 2 * ph, pitch = padded_pitch(w, pw, kw, sw);
#pragma omp parallel num_threads(threads)
    {
        padded_plane buf = {scratch(rows * sw * pitch), rows, sw, pitch};
#pragma omp for schedule(static)
        for (i64 p = 0; p < planes; ++p) {
            pad_plane(&buf, x + p * h * w, h, w, ph, pw);
            correlate_plane(&buf, weight + (p % c) * kh * kw, kh, kw, sh, oh, ow, out + p * oh * ow);
        }
        free(buf.data);
    }
}

/* Input gradient for strides other than 1 (or padding wider than the filter): each output
 * gradient row is scattered into the input rows its taps read. */
static void scatter_input_grad(const conv_shape *s, const float *filt, const float *grad_out,
                               float *grad_in) {
    memset(grad_in, 0, (size_t)(s->h * s->w) * sizeof(float));
    for (i64 y = 0; y < s->oh; ++y) {
        const float *grow = grad_out + y * s->ow;
        for (i64 i = 0; i < s->kh; ++i) {
            const i64 iy = y * s->sh - s->ph + i;
            if (iy < 0 || iy >= s->h) continue;
            float *girow = grad_in + iy * s->w;
            for (i64 j = 0; j < s->kw; ++j) {
                /* output columns whose input column x * sw - pw + j lies inside the row */
                i64 lo = ceil_div(s->pw - j, s->sw), hi = floor_div(s->w - 1 + s->pw - j, s->sw) + 1;
                lo = lo > 0 ? lo : 0;
                hi = hi < s->ow ? hi : s->ow;
                const float tap = filt[i * s->kw + j];
                for (i64 k = lo; k < hi; ++k) girow[k * s->sw - s->pw + j] += tap * grow[k];
            }
        }
    }
}

/* filt_acc[i][j] += sum_yx grad[y][x] * padded[y * sh + i][x * sw + j]; grad rows have a pitch
 * that is a multiple of LANES, zero beyond ow. Specialised like correlate_plane. */
static inline __attribute__((always_inline)) void accumulate_filter_grad_k(
        const padded_plane *in, const float *grad, i64 gpitch, const i64 kh, const i64 kw, i64 sh,
        i64 oh, double *filt_acc) {
    const i64 sw = in->phases;
    vec8 acc[MAX_WIDTH];
    i64 offset[MAX_WIDTH];
    for (i64 j = 0; j < kw; ++j) offset[j] = (j % sw) * in->pitch + j / sw;
    for (i64 i = 0; i < kh; ++i) {
        for (i64 j = 0; j < kw; ++j) acc[j] = splat8(0.0f);
        for (i64 y = 0; y < oh; ++y) {
            const float *grow = grad + y * gpitch;
            const float *row = in->data + (y * sh + i) * sw * in->pitch;
            for (i64 x0 = 0; x0 < gpitch; x0 += LANES) {
                const vec8 g = load8(grow + x0);
                for (i64 j = 0; j < kw; ++j) acc[j] += g * load8(row + offset[j] + x0);
            }
        }
        for (i64 j = 0; j < kw; ++j) {
            double sum = 0.0;
            for (int lane = 0; lane < LANES; ++lane) sum += acc[j][lane];
            filt_acc[i * kw + j] += sum;
        }
    }
}

static void accumulate_filter_grad(const padded_plane *in, const float *grad, i64 gpitch, i64 kh,
                                   i64 kw, i64 sh, i64 oh, double *filt_acc) {
    if (kh == 3 && kw == 3) accumulate_filter_grad_k(in, grad, gpitch, 3, 3, sh, oh, filt_acc);
    else if (kh == 5 && kw == 5) accumulate_filter_grad_k(in, grad, gpitch, 5, 5, sh, oh, filt_acc);
    else if (kh == 7 && kw == 7) accumulate_filter_grad_k(in, grad, gpitch, 7, 7, sh, oh, filt_acc);
    else accumulate_filter_grad_k(in, grad, gpitch, kh, kw, sh, oh, filt_acc);
}

/* grad_x and grad_weight may be NULL (not wanted). Work is split by channel, so each thread owns
 * its filters' gradients; images are summed in order, so results do not depend on the threads.
 * Filters wider than MAX_WIDTH columns or with more than MAX_TAPS taps are refused by the caller. */
void pimm_depthwise_conv2d_backward(const float *x, const float *weight, const float *grad_out,
                                    float *grad_x, float *grad_weight, i64 n, i64 c, i64 h, i64 w,
                                    i64 kh, i64 kw, i64 sh, i64 sw, i64 ph, i64 pw, i64 oh, i64 ow,
                                    int threads) {
    const conv_shape s = {n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow};
    const int full_correlation = sh == 1 && sw == 1 && ph <= kh - 1 && pw <= kw - 1;
    const i64 x_rows = h + 2 * ph, x_pitch = padded_pitch(w, pw, kw, sw);
    const i64 g_pad_h = kh - 1 - ph, g_pad_w = kw - 1 - pw;
    const i64 g_rows = oh + 2 * g_pad_h, g_pitch = padded_pitch(ow, g_pad_w, kw, 1);
    const i64 gw_pitch = round_up(ow, LANES);
#pragma omp parallel num_threads(threads)
    {
        padded_plane xbuf = {grad_weight ? scratch(x_rows * sw * x_pitch) : 0, x_rows, sw, x_pitch};
        padded_plane gbuf = {grad_x && full_correlation ? scratch(g_rows * g_pitch) : 0, g_rows, 1,
                             g_pitch};
        float *gflat = grad_weight ? scratch(oh * gw_pitch) : 0;
#pragma omp for schedule(static)
        for (i64 ch = 0; ch < c; ++ch) {
            const float *filt = weight + ch * kh * kw;
            float rotated[MAX_TAPS];
            double acc[MAX_TAPS];
            for (i64 t = 0; t < kh * kw; ++t) {
                rotated[t] = filt[kh * kw - 1 - t];
                acc[t] = 0.0;
            }
            for (i64 img = 0; img < n; ++img) {
                const i64 p = img * c + ch;
                const float *grad = grad_out + p * oh * ow;
                if (grad_x) {
                    if (full_correlation) {
                        pad_plane(&gbuf, grad, oh, ow, g_pad_h, g_pad_w);
                        correlate_plane(&gbuf, rotated, kh, kw, 1, h, w, grad_x + p * h * w);
                    } else {
                        scatter_input_grad(&s, filt, grad, grad_x + p * h * w);
                    }
                }
                if (grad_weight) {
                    pad_plane(&xbuf, x + p * h * w, h, w, ph, pw);
                    memset(gflat, 0, (size_t)(oh * gw_pitch) * sizeof(float));
                    for (i64 y = 0; y < oh; ++y) memcpy(gflat + y * gw_pitch, grad + y * ow, (size_t)ow * sizeof(float));
                    accumulate_filter_grad(&xbuf, gflat, gw_pitch, kh, kw, sh, oh, acc);
                }
            }
            if (grad_weight)
                for (i64 t = 0; t < kh * kw; ++t) grad_weight[ch * kh * kw + t] = (float)acc[t];
        }
        free(xbuf.data);
        free(gbuf.data);
        free(gflat);
    }
}
