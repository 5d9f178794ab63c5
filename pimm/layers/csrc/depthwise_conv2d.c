/* Depthwise 2-D convolution (one filter per channel, NCHW, float32) for CPUs: forward and backward.
 *
 * Paddle 3.3's CPU kernel runs a depthwise convolution as im2col plus a tiny matrix product per
 * channel and image, which is several times slower than a direct loop. Here every output row is
 * accumulated tap by tap from whole input rows (unit stride: contiguous, vectorised loops), and
 * the work is split over channel planes with OpenMP. Zero padding is implicit: each tap only
 * touches the output columns whose input column lies inside the image.
 *
 * Built on demand by pimm/layers/native.py; called through ctypes with raw pointers to contiguous
 * tensors and an explicit thread count.
 */
#include <stdint.h>
#include <string.h>

typedef int64_t i64;

typedef struct {
    i64 n, c, h, w;        /* input */
    i64 kh, kw;            /* filter */
    i64 sh, sw, ph, pw;    /* stride, zero padding */
    i64 oh, ow;            /* output */
} conv_shape;

static i64 ceil_div(i64 a, i64 b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
static i64 floor_div(i64 a, i64 b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* Output columns [*lo, *hi) whose input column x*sw - pw + j lies in [0, w). */
static void valid_columns(const conv_shape *s, i64 j, i64 *lo, i64 *hi) {
    i64 first = ceil_div(s->pw - j, s->sw);
    i64 last = floor_div(s->w - 1 + s->pw - j, s->sw) + 1;
    *lo = first > 0 ? first : 0;
    *hi = last < s->ow ? last : s->ow;
}

static void forward_plane(const conv_shape *s, const float *restrict in, const float *restrict filt,
                          float *restrict out) {
    for (i64 y = 0; y < s->oh; ++y) {
        float *restrict orow = out + y * s->ow;
        memset(orow, 0, (size_t)s->ow * sizeof(float));
        for (i64 i = 0; i < s->kh; ++i) {
            i64 iy = y * s->sh - s->ph + i;
            if (iy < 0 || iy >= s->h) continue;
            const float *restrict irow = in + iy * s->w;
            for (i64 j = 0; j < s->kw; ++j) {
                const float tap = filt[i * s->kw + j];
                i64 lo, hi;
                valid_columns(s, j, &lo, &hi);
                if (s->sw == 1) {
                    const float *restrict src = irow + lo - s->pw + j;
                    float *restrict dst = orow + lo;
                    for (i64 k = 0; k < hi - lo; ++k) dst[k] += tap * src[k];
                } else {
                    for (i64 x = lo; x < hi; ++x) orow[x] += tap * irow[x * s->sw - s->pw + j];
                }
            }
        }
    }
}

void pimm_depthwise_conv2d_forward(const float *x, const float *weight, float *out, i64 n, i64 c,
                                   i64 h, i64 w, i64 kh, i64 kw, i64 sh, i64 sw, i64 ph, i64 pw,
                                   i64 oh, i64 ow, int threads) {
    const conv_shape s = {n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow};
    const i64 planes = n * c;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (i64 p = 0; p < planes; ++p) {
        forward_plane(&s, x + p * h * w, weight + (p % c) * kh * kw, out + p * oh * ow);
    }
}

/* One image's plane of one channel: adds the input gradient (when grad_in) and this plane's
 * contribution to the filter gradient (when filt_acc, accumulated in double). */
static void backward_plane(const conv_shape *s, const float *restrict in, const float *restrict filt,
                           const float *restrict grad_out, float *restrict grad_in,
                           double *restrict filt_acc) {
    if (grad_in) memset(grad_in, 0, (size_t)(s->h * s->w) * sizeof(float));
    for (i64 y = 0; y < s->oh; ++y) {
        const float *restrict grow = grad_out + y * s->ow;
        for (i64 i = 0; i < s->kh; ++i) {
            i64 iy = y * s->sh - s->ph + i;
            if (iy < 0 || iy >= s->h) continue;
            const float *restrict irow = in + iy * s->w;
            float *restrict girow = grad_in ? grad_in + iy * s->w : 0;
            for (i64 j = 0; j < s->kw; ++j) {
                i64 lo, hi;
                valid_columns(s, j, &lo, &hi);
                if (hi <= lo) continue;
                const i64 len = hi - lo, first = lo * s->sw - s->pw + j;
                if (girow) {
                    const float tap = filt[i * s->kw + j];
                    if (s->sw == 1) {
                        float *restrict dst = girow + first;
                        const float *restrict src = grow + lo;
                        for (i64 k = 0; k < len; ++k) dst[k] += tap * src[k];
                    } else {
                        for (i64 k = 0; k < len; ++k) girow[first + k * s->sw] += tap * grow[lo + k];
                    }
                }
                if (filt_acc) {
                    float dot = 0.0f;
                    if (s->sw == 1) {
                        const float *restrict a = grow + lo, *restrict b = irow + first;
#pragma omp simd reduction(+ : dot)
                        for (i64 k = 0; k < len; ++k) dot += a[k] * b[k];
                    } else {
                        for (i64 k = 0; k < len; ++k) dot += grow[lo + k] * irow[first + k * s->sw];
                    }
                    filt_acc[i * s->kw + j] += dot;
                }
            }
        }
    }
}

/* grad_x and grad_weight may be NULL (not wanted). Work is split by channel, so each thread owns
 * its filters' gradients; images are summed in order, so the result does not depend on threads. */
void pimm_depthwise_conv2d_backward(const float *x, const float *weight, const float *grad_out,
                                    float *grad_x, float *grad_weight, i64 n, i64 c, i64 h, i64 w,
                                    i64 kh, i64 kw, i64 sh, i64 sw, i64 ph, i64 pw, i64 oh, i64 ow,
                                    int threads) {
    const conv_shape s = {n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow};
#pragma omp parallel for num_threads(threads) schedule(static)
    for (i64 ch = 0; ch < c; ++ch) {
        double acc[256];  /* up to 256 taps (16 x 16), checked by the caller */
        const i64 taps = kh * kw;
        for (i64 t = 0; t < taps; ++t) acc[t] = 0.0;
        for (i64 img = 0; img < n; ++img) {
            const i64 p = img * c + ch;
            backward_plane(&s, x + p * h * w, weight + ch * taps, grad_out + p * oh * ow,
                           grad_x ? grad_x + p * h * w : 0, grad_weight ? acc : 0);
        }
        if (grad_weight)
            for (i64 t = 0; t < taps; ++t) grad_weight[ch * taps + t] = (float)acc[t];
    }
}
