// XLA FFI handler for the CPU: C = op(A) @ op(B) in float32 through a CBLAS sgemm that the
// Python side finds at run time (numpy's bundled OpenBLAS) and hands over with seqdis_set_sgemm.
// Compiled on first use by seqdis_jax/nn/cpu_blas.py; used for the convolutions' weight
// gradients, which XLA:CPU runs as Eigen dots at about half of OpenBLAS's speed on those
// shapes (a long contraction, small output: docs/results.md, issue 20).
#include <cstdint>
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

using Sgemm64 = void (*)(int, int, int, int64_t, int64_t, int64_t, float, const float*, int64_t,
                         const float*, int64_t, float, float*, int64_t);
using Sgemm32 = void (*)(int, int, int, int32_t, int32_t, int32_t, float, const float*, int32_t,
                         const float*, int32_t, float, float*, int32_t);
static void* g_sgemm = nullptr;
static int g_int64 = 0;

extern "C" void seqdis_set_sgemm(void* fn, int int64) { g_sgemm = fn; g_int64 = int64; }

static ffi::Error SgemmImpl(ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                            ffi::ResultBuffer<ffi::F32> c, int32_t trans_a, int32_t trans_b) {
  if (g_sgemm == nullptr) return ffi::Error::InvalidArgument("seqdis_sgemm: no sgemm set");
  auto ad = a.dimensions(), bd = b.dimensions();
  if (ad.size() != 2 || bd.size() != 2)
    return ffi::Error::InvalidArgument("seqdis_sgemm: operands must be matrices");
  int64_t m = trans_a ? ad[1] : ad[0], k = trans_a ? ad[0] : ad[1];
  int64_t n = trans_b ? bd[0] : bd[1];
  const int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
  int ta = trans_a ? kTrans : kNoTrans, tb = trans_b ? kTrans : kNoTrans;
  if (g_int64)
    reinterpret_cast<Sgemm64>(g_sgemm)(kRowMajor, ta, tb, m, n, k, 1.0f, a.typed_data(), ad[1],
                                       b.typed_data(), bd[1], 0.0f, c->typed_data(), n);
  else
    reinterpret_cast<Sgemm32>(g_sgemm)(kRowMajor, ta, tb, m, n, k, 1.0f, a.typed_data(), ad[1],
                                       b.typed_data(), bd[1], 0.0f, c->typed_data(), n);
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(SeqdisSgemm, SgemmImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int32_t>("trans_a")
                                  .Attr<int32_t>("trans_b"));
