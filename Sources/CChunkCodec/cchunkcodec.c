#include <string.h>
#include <openssl/sha.h>
#include <zstd.h>
#include "cchunkcodec.h"

void bvm_sha256(const void *data, size_t length, uint8_t digest[32]) {
    SHA256((const unsigned char *)data, length, digest);
}

size_t bvm_zstd_bound(size_t length) { return ZSTD_compressBound(length); }

size_t bvm_zstd_compress(void *dst, size_t capacity, const void *src, size_t length, int level) {
    static __thread ZSTD_CCtx *cctx;
    if (!cctx && !(cctx = ZSTD_createCCtx())) return 0;
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level))) return 0;
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
    size_t n = ZSTD_compress2(cctx, dst, capacity, src, length);
    return ZSTD_isError(n) ? 0 : n;
}

int bvm_zstd_decompress_exact(void *dst, size_t expected, const void *src, size_t length) {
    unsigned long long declared = ZSTD_getFrameContentSize(src, length);
    if (declared != (unsigned long long)expected) return -1;
    /* One frame and nothing after it: trailing bytes would be data the digest does not cover. */
    size_t frame = ZSTD_findFrameCompressedSize(src, length);
    if (ZSTD_isError(frame) || frame != length) return -1;
    static __thread ZSTD_DCtx *dctx;
    if (!dctx && !(dctx = ZSTD_createDCtx())) return -1;
    size_t n = ZSTD_decompressDCtx(dctx, dst, expected, src, length);
    return (ZSTD_isError(n) || n != expected) ? -1 : 0;
}

int bvm_all_zero(const void *data, size_t length) {
    const unsigned char *p = data;
    if (length == 0) return 1;
    /* p[0] == 0 and each byte equals the one before it: memcmp runs at memory speed. */
    return p[0] == 0 && memcmp(p, p + 1, length - 1) == 0;
}
