// Uses only the public headers: a tensor, a DLPack round trip, a store and a
// process group with no backend attached (which must say so).
#include <cstdio>
#include <tutti/tutti.hpp>

int main() {
  tutti::Tensor t = tutti::Tensor::zeros({2, 3}, tutti::DType::Float32);
  t.data<float>()[4] = 2.5f;
  tutti::Tensor back = tutti::from_dlpack(tutti::to_dlpack(t));
  auto store = std::make_shared<tutti::HashStore>();
  store->set("answer", std::string("42"));
  tutti::ProcessGroup pg(store, 0, 1, {});
  std::vector<tutti::Tensor> tensors = {t};
  try {
    pg.allreduce(tensors);
    return 1;
  } catch (const tutti::InvalidArgument& e) {
    std::printf("expected error: %s\n", e.what());
  }
  bool ok = back.equal(t) && store->get_string("answer") == "42" && pg.size() == 1;
  std::printf("consumer %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
