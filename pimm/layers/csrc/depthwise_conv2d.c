/* Depthwise 2-D convolution (one filter per channel, NCHW, float32) for CPUs: forward and backward.
 *
 * Paddle 3.3's CPU kernel runs a depthwise convolution as im2col plus a tiny matrix product per
 * channel and image, several times slower than a direct loop. Two layouts of the work, chosen by
 * the output width; OpenMP splits it, and the caller passes the thread count.
 *
 * Wide maps (output rows of at least WIDE_ROW pixels), plane by plane: each channel plane is
 * copied into a zero-padded scratch plane, split into `stride` column phases so that every tap
 * reads consecutive floats; then 8 outputs of a row are accumulated in one vector register over
 * all taps (one load and one multiply-add per tap).
 *
 *   input gradient, stride 1: the forward loop on the padded output gradient with the filter
 *                             rotated by 180 degrees ("full" correlation);
 *   filter gradient:          per filter row, one vector accumulator per tap column, summed over
 *                             the plane, then over images in double precision.
 *
 * Narrow maps (the last stages: 8x8 and less), and the input gradient of strided convolutions,
 * channel-blocked: 8 channels of one image are transposed into the vector lanes of a zero-padded
 * tile ([row][column][8 channels]), so every tap is one multiply-add on 8 channels whatever the
 * map's width or stride, and a filter's taps are loaded once for all the images. On 4x4 maps the
 * plane loop used half of each vector and spent most of its time setting planes up; the scalar
 * scatter it needed for strided input gradients was the slowest part of the backward pass.
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

/* ---- channel-blocked path ------------------------------------------------------------------ */

enum { WIDE_ROW = 16 };

/* A tile of 8 channels of one image: pixel (y, x) of the padded map is tile[(y * cols + x) * LANES
 * + lane], lane k holding channel ch0 + k. */
typedef struct {
    float *data;
    i64 rows, cols;
} channel_tile;

static inline i64 valid_lanes(i64 c, i64 ch0) { return c - ch0 < LANES ? c - ch0 : LANES; }

/* tile <- the h x w planes src[k * h * w] (k < valid) placed at (top, left); lanes past `valid`
 * are zeroed, the border is left as it is (zero from the start, never written). */
static void gather_tile(channel_tile *tile, const float *src, i64 valid, i64 h, i64 w, i64 top, i64 left) {
    for (i64 y = 0; y < h; ++y) {
        float *row = tile->data + ((y + top) * tile->cols + left) * LANES;
        for (i64 k = 0; k < LANES; ++k) {
            const float *srow = src + k * h * w + y * w;
            if (k < valid) for (i64 x = 0; x < w; ++x) row[x * LANES + k] = srow[x];
            else for (i64 x = 0; x < w; ++x) row[x * LANES + k] = 0.0f;
        }
    }
}

/* The h x w pixels at (top, left) of the tile back into planes dst[k * h * w], k < valid. */
static void scatter_tile(const channel_tile *tile, float *dst, i64 valid, i64 h, i64 w, i64 top, i64 left) {
    for (i64 y = 0; y < h; ++y) {
        const float *row = tile->data + ((y + top) * tile->cols + left) * LANES;
        for (i64 k = 0; k < valid; ++k) {
            float *drow = dst + k * h * w + y * w;
            for (i64 x = 0; x < w; ++x) drow[x] = row[x * LANES + k];
        }
    }
}

static channel_tile new_tile(i64 rows, i64 cols) {
    channel_tile tile = {scratch(rows * cols * LANES), rows, cols};
    memset(tile.data, 0, (size_t)(rows * cols * LANES) * sizeof(float));
    return tile;
}

/* taps[t] = the filter tap t of channels ch0 .. ch0 + 7 (0 past the last channel) */
static void load_taps(vec8 *taps, const float *weight, i64 ntaps, i64 valid, i64 ch0) {
    for (i64 t = 0; t < ntaps; ++t) {
        float lanes[LANES];
        for (i64 k = 0; k < LANES; ++k) lanes[k] = k < valid ? weight[(ch0 + k) * ntaps + t] : 0.0f;
        taps[t] = load8(lanes);
    }
}

static inline __attribute__((always_inline)) void correlate_tile_k(
        const channel_tile *in, const vec8 *taps, const i64 kh, const i64 kw, i64 sh, i64 sw,
        i64 oh, i64 ow, float *out) {
    for (i64 y = 0; y < oh; ++y)
        for (i64 x = 0; x < ow; ++x) {
            vec8 acc = splat8(0.0f);
            for (i64 i = 0; i < kh; ++i) {
                const float *pixel = in->data + ((y * sh + i) * in->cols + x * sw) * LANES;
                for (i64 j = 0; j < kw; ++j) acc += taps[i * kw + j] * load8(pixel + j * LANES);
            }
            memcpy(out + (y * ow + x) * LANES, &acc, sizeof acc);
        }
}

static void correlate_tile(const channel_tile *in, const vec8 *taps, i64 kh, i64 kw, i64 sh, i64 sw,
                           i64 oh, i64 ow, float *out) {
    if (kh == 3 && kw == 3) correlate_tile_k(in, taps, 3, 3, sh, sw, oh, ow, out);
    else if (kh == 5 && kw == 5) correlate_tile_k(in, taps, 5, 5, sh, sw, oh, ow, out);
    else if (kh == 7 && kw == 7) correlate_tile_k(in, taps, 7, 7, sh, sw, oh, ow, out);
    else correlate_tile_k(in, taps, kh, kw, sh, sw, oh, ow, out);
}

/* Units are (channel block, image) pairs, block-major, so a thread reloads taps only when its
 * block changes. */
static void forward_blocked(const float *x, const float *weight, float *out, const conv_shape *s,
                            int threads) {
    const i64 blocks = (s->c + LANES - 1) / LANES, ntaps = s->kh * s->kw;
#pragma omp parallel num_threads(threads)
    {
        channel_tile in = new_tile(s->h + 2 * s->ph, s->w + 2 * s->pw);
        channel_tile res = new_tile(s->oh, s->ow);
        vec8 taps[MAX_TAPS];
        i64 loaded = -1;
#pragma omp for schedule(static)
        for (i64 u = 0; u < blocks * s->n; ++u) {
            const i64 block = u / s->n, img = u % s->n, ch0 = block * LANES;
            const i64 valid = valid_lanes(s->c, ch0), offset = (img * s->c + ch0);
            if (block != loaded) {
                load_taps(taps, weight, ntaps, valid, ch0);
                loaded = block;
            }
            gather_tile(&in, x + offset * s->h * s->w, valid, s->h, s->w, s->ph, s->pw);
            correlate_tile(&in, taps, s->kh, s->kw, s->sh, s->sw, s->oh, s->ow, res.data);
            scatter_tile(&res, out + offset * s->oh * s->ow, valid, s->oh, s->ow, 0, 0);
        }
        free(in.data);
        free(res.data);
    }
}

/* grad_x tile (padded) += taps * grad_out tile, pixel by pixel: each output pixel's gradient goes
 * back to the kh x kw input pixels it read. */
static inline __attribute__((always_inline)) void scatter_input_grad_k(
        channel_tile *gx, const float *gy, const vec8 *taps, const i64 kh, const i64 kw, i64 sh,
        i64 sw, i64 oh, i64 ow) {
    for (i64 y = 0; y < oh; ++y)
        for (i64 x = 0; x < ow; ++x) {
            const vec8 g = load8(gy + (y * ow + x) * LANES);
            for (i64 i = 0; i < kh; ++i) {
                float *pixel = gx->data + ((y * sh + i) * gx->cols + x * sw) * LANES;
                for (i64 j = 0; j < kw; ++j) {
                    vec8 v = load8(pixel + j * LANES);
                    v += taps[i * kw + j] * g;
                    memcpy(pixel + j * LANES, &v, sizeof v);
                }
            }
        }
}

/* acc[t] += sum over output pixels of grad_out * the input pixel tap t read, per lane. */
static inline __attribute__((always_inline)) void accumulate_filter_grad_tile_k(
        const channel_tile *in, const float *gy, const i64 kh, const i64 kw, i64 sh, i64 sw, i64 oh,
        i64 ow, double *acc) {
    for (i64 i = 0; i < kh; ++i)
        for (i64 j = 0; j < kw; ++j) {
            vec8 sum = splat8(0.0f);
            for (i64 y = 0; y < oh; ++y) {
                const float *row = in->data + ((y * sh + i) * in->cols + j) * LANES;
                const float *grow = gy + y * ow * LANES;
                for (i64 x = 0; x < ow; ++x) sum += load8(grow + x * LANES) * load8(row + x * sw * LANES);
            }
            for (int k = 0; k < LANES; ++k) acc[(i * kw + j) * LANES + k] += sum[k];
        }
}

static void backward_tile(const channel_tile *in, channel_tile *gx, const float *gy, const vec8 *taps,
                          const conv_shape *s, double *acc) {
    const i64 kh = s->kh, kw = s->kw, sh = s->sh, sw = s->sw, oh = s->oh, ow = s->ow;
    if (gx) {
        memset(gx->data, 0, (size_t)(gx->rows * gx->cols * LANES) * sizeof(float));
        if (kh == 3 && kw == 3) scatter_input_grad_k(gx, gy, taps, 3, 3, sh, sw, oh, ow);
        else if (kh == 5 && kw == 5) scatter_input_grad_k(gx, gy, taps, 5, 5, sh, sw, oh, ow);
        else if (kh == 7 && kw == 7) scatter_input_grad_k(gx, gy, taps, 7, 7, sh, sw, oh, ow);
        else scatter_input_grad_k(gx, gy, taps, kh, kw, sh, sw, oh, ow);
    }
    if (in) {
        if (kh == 3 && kw == 3) accumulate_filter_grad_tile_k(in, gy, 3, 3, sh, sw, oh, ow, acc);
        else if (kh == 5 && kw == 5) accumulate_filter_grad_tile_k(in, gy, 5, 5, sh, sw, oh, ow, acc);
        else if (kh == 7 && kw == 7) accumulate_filter_grad_tile_k(in, gy, 7, 7, sh, sw, oh, ow, acc);
        else accumulate_filter_grad_tile_k(in, gy, kh, kw, sh, sw, oh, ow, acc);
    }
}

/* Work is split by channel block; each block sums its images in order (double precision), so
 * results do not depend on the threads. */
static void backward_blocked(const float *x, const float *weight, const float *grad_out, float *grad_x,
                             float *grad_weight, const conv_shape *s, int threads) {
    const i64 blocks = (s->c + LANES - 1) / LANES, ntaps = s->kh * s->kw;
    const i64 rows = s->h + 2 * s->ph, cols = s->w + 2 * s->pw;
#pragma omp parallel num_threads(threads)
    {
        channel_tile in = {0, rows, cols}, gx = {0, rows, cols};
        if (grad_weight) in = new_tile(rows, cols);
        if (grad_x) gx = new_tile(rows, cols);
        channel_tile gy = new_tile(s->oh, s->ow);
        vec8 taps[MAX_TAPS];
        double *acc = (double *)malloc((size_t)(ntaps * LANES) * sizeof(double));
#pragma omp for schedule(static)
        for (i64 block = 0; block < blocks; ++block) {
            const i64 ch0 = block * LANES, valid = valid_lanes(s->c, ch0);
            load_taps(taps, weight, ntaps, valid, ch0);
            memset(acc, 0, (size_t)(ntaps * LANES) * sizeof(double));
            for (i64 img = 0; img < s->n; ++img) {
                const i64 offset = img * s->c + ch0;
                gather_tile(&gy, grad_out + offset * s->oh * s->ow, valid, s->oh, s->ow, 0, 0);
                if (grad_weight) gather_tile(&in, x + offset * s->h * s->w, valid, s->h, s->w, s->ph, s->pw);
                backward_tile(grad_weight ? &in : 0, grad_x ? &gx : 0, gy.data, taps, s, acc);
                if (grad_x) scatter_tile(&gx, grad_x + offset * s->h * s->w, valid, s->h, s->w, s->ph, s->pw);
            }
            if (grad_weight)
                for (i64 k = 0; k < valid; ++k)
                    for (i64 t = 0; t < ntaps; ++t)
                        grad_weight[(ch0 + k) * ntaps + t] = (float)acc[t * LANES + k];
        }
        free(in.data);
        free(gx.data);
        free(gy.data);
        free(acc);
    }
}

/* ---- entry points -------------------------------------------------------------------------- */

void pimm_depthwise_conv2d_forward(const float *x, const float *weight, float *out, i64 n, i64 c,
                                   i64 h, i64 w, i64 kh, i64 kw, i64 sh, i64 sw, i64 ph, i64 pw,
                                   i64 oh, i64 ow, int threads) {
    if (ow < WIDE_ROW) {
        const conv_shape s = {n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow};
        forward_blocked(x, weight, out, &s, threads);
        return;
    }
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

/* grad_x and grad_weight may be NULL (not wanted). Work is split by channel (block), so each thread
 * owns its filters' gradients; images are summed in order, so results do not depend on the threads.
 * Filters wider than MAX_WIDTH columns or with more than MAX_TAPS taps are refused by the caller.
 * The plane loop computes input gradients only as a "full" correlation (stride 1, padding within
 * the filter); everything else takes the blocked path. */
void pimm_depthwise_conv2d_backward(const float *x, const float *weight, const float *grad_out,
                                    float *grad_x, float *grad_weight, i64 n, i64 c, i64 h, i64 w,
                                    i64 kh, i64 kw, i64 sh, i64 sw, i64 ph, i64 pw, i64 oh, i64 ow,
                                    int threads) {
    const conv_shape s = {n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow};
    const int full_correlation = sh == 1 && sw == 1 && ph <= kh - 1 && pw <= kw - 1;
    if (ow < WIDE_ROW || (grad_x && !full_correlation)) {
        backward_blocked(x, weight, grad_out, grad_x, grad_weight, &s, threads);
        return;
    }
    const i64 x_rows = h + 2 * ph, x_pitch = padded_pitch(w, pw, kw, sw);
    const i64 g_pad_h = kh - 1 - ph, g_pad_w = kw - 1 - pw;
    const i64 g_rows = oh + 2 * g_pad_h, g_pitch = padded_pitch(ow, g_pad_w, kw, 1);
    const i64 gw_pitch = round_up(ow, LANES);
#pragma omp parallel num_threads(threads)
    {
        padded_plane xbuf = {grad_weight ? scratch(x_rows * sw * x_pitch) : 0, x_rows, sw, x_pitch};
        padded_plane gbuf = {grad_x ? scratch(g_rows * g_pitch) : 0, g_rows, 1, g_pitch};
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
                    pad_plane(&gbuf, grad, oh, ow, g_pad_h, g_pad_w);
                    correlate_plane(&gbuf, rotated, kh, kw, 1, h, w, grad_x + p * h * w);
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
