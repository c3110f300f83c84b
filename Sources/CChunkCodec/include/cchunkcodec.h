#ifndef BACKUP_VM_CCHUNKCODEC_H
#define BACKUP_VM_CCHUNKCODEC_H
#include <stddef.h>
#include <stdint.h>

/// The chunk store's two primitives, shared by the server and the hypervisor helper: SHA-256 (OpenSSL's
/// libcrypto, which uses the CPU's SHA extensions where it has them) and zstd frames (libzstd). Both are
/// linked statically into the helper, so a hypervisor needs neither library's package.

/// SHA-256 of `length` bytes at `data` into `digest` (32 bytes).
void bvm_sha256(const void *data, size_t length, uint8_t digest[32]);

/// The largest zstd frame of `length` input bytes.
size_t bvm_zstd_bound(size_t length);

/// Compresses `length` bytes into one zstd frame with its content size and a content checksum (so
/// `zstd -d` checks a chunk by hand too). Returns the frame's size, or 0 on error.
size_t bvm_zstd_compress(void *dst, size_t capacity, const void *src, size_t length, int level);

/// Decompresses one zstd frame that must hold exactly `expected` bytes (its header says so and the
/// output fills it). Returns 0 on success, -1 on a damaged or differently sized frame. Never writes
/// more than `expected` bytes: a hostile frame cannot make the caller allocate or overrun.
int bvm_zstd_decompress_exact(void *dst, size_t expected, const void *src, size_t length);

/// Is every byte of `data` zero?
int bvm_all_zero(const void *data, size_t length);
#endif
