// Operator schemas of the l2l_fast library. Backends register their kernels in
// cpu/ and cuda/; autograd and fake kernels are registered in Python
// (l2l_fast/ops). Importing l2l_fast._C runs all registrations.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// A module with no methods: importing it loads the shared library, which runs
// the TORCH_LIBRARY static initialisers.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(l2l_fast, m) {
  // out[b] = weight[b] * d(student[b], target[b]); grad (student's shape and
  // dtype, contiguous) is d out[b] / d student[b] when compute_grad, else empty.
  m.def(
      "encoder_distance(Tensor student, Tensor target, Tensor? weight, "
      "str distance, bool compute_grad) -> (Tensor out, Tensor grad)");
  // The list form: out[b] = sum over maps m of weight[b] * d(students[m][b], targets[m][b]).
  m.def(
      "encoder_distance_multi(Tensor[] students, Tensor[] targets, Tensor? weight, "
      "str distance, bool compute_grad) -> (Tensor out, Tensor[] grads)");
  // grad[b, ...] = grad_unit[b, ...] * grad_out[b], in grad_unit's dtype.
  m.def("scale_rows(Tensor grad_unit, Tensor grad_out) -> Tensor");
  // keep * (mu + sigma * z) + (1 - keep) * fill, z the Philox normal stream at
  // seed, offset + i; clamp applied to the noise before the keep mask. mu and
  // sigma are mean and std when given (one element per group of `stats`), else
  // computed from x.
  m.def(
      "gaussian_target(Tensor x, SymInt seed, SymInt offset, str stats, "
      "float? clamp_lo, float? clamp_hi, Tensor? keep, float fill, "
      "Tensor? mean=None, Tensor? std=None) -> Tensor");
  // The raw stream behind gaussian_target: [like.numel(), 2] int64 holding the
  // two uint32 Philox outputs at counter offset + i, on like's device.
  m.def("philox_stream(Tensor like, SymInt seed, SymInt offset) -> Tensor");
}
