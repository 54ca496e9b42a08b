// Data-parallel training with tutti: every rank trains the same logistic
// regression on its own synthetic data, and the gradients are averaged with
// allreduce(AVG) each step, so all ranks take the same steps.
//
//   tuttirun -n 4 ./build/release/examples/data_parallel_sgd [--steps 200]
//
// Prints the loss falling and checks at the end that every rank holds
// bitwise-identical weights (exit code 1 if not, or if the loss did not fall).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <tutti/tutti.hpp>
#include <vector>

namespace {

constexpr int kFeatures = 16;
constexpr int kSamplesPerRank = 512;

struct Data {
  std::vector<float> x;  // [kSamplesPerRank, kFeatures]
  std::vector<float> y;  // 0 or 1
};

// Each rank draws its own samples; the labels come from one hidden model, so
// every rank's data tells the same story.
Data make_data(int rank) {
  std::mt19937 shared(42);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> hidden(kFeatures);
  for (auto& w : hidden) w = normal(shared);
  std::mt19937 local(1000 + static_cast<unsigned>(rank));
  Data d;
  d.x.resize(kSamplesPerRank * kFeatures);
  d.y.resize(kSamplesPerRank);
  for (int i = 0; i < kSamplesPerRank; ++i) {
    float z = 0;
    for (int j = 0; j < kFeatures; ++j) {
      float v = normal(local);
      d.x[i * kFeatures + j] = v;
      z += v * hidden[j];
    }
    z += 0.5f * normal(local);  // label noise
    d.y[i] = z > 0 ? 1.0f : 0.0f;
  }
  return d;
}

float sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

// Mean log-loss on the local data, and its gradient (bias last).
float loss_and_gradient(const Data& d, const std::vector<float>& w, std::vector<float>& grad) {
  std::fill(grad.begin(), grad.end(), 0.0f);
  float loss = 0;
  for (int i = 0; i < kSamplesPerRank; ++i) {
    float z = w[kFeatures];
    for (int j = 0; j < kFeatures; ++j) z += w[j] * d.x[i * kFeatures + j];
    const float p = sigmoid(z);
    const float y = d.y[i];
    loss -= y * std::log(p + 1e-7f) + (1 - y) * std::log(1 - p + 1e-7f);
    const float e = p - y;
    for (int j = 0; j < kFeatures; ++j) grad[j] += e * d.x[i * kFeatures + j];
    grad[kFeatures] += e;
  }
  for (auto& g : grad) g /= kSamplesPerRank;
  return loss / kSamplesPerRank;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 200;
  float lr = 0.5f;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--steps") steps = std::stoi(argv[i + 1]);
    if (std::string(argv[i]) == "--lr") lr = std::stof(argv[i + 1]);
  }
  auto pg = tutti::init_process_group();
  const int rank = pg->rank();
  const int size = pg->size();
  const Data data = make_data(rank);

  // Weights and bias live in one tensor so one allreduce carries the gradient.
  std::vector<float> w(kFeatures + 1, 0.0f);
  tutti::Tensor grad = tutti::Tensor::zeros({kFeatures + 1}, tutti::DType::Float32);
  tutti::Tensor loss = tutti::Tensor::zeros({1}, tutti::DType::Float32);
  std::vector<float> local_grad(kFeatures + 1);
  float first_loss = 0, last_loss = 0;
  for (int step = 0; step < steps; ++step) {
    loss.data<float>()[0] = loss_and_gradient(data, w, local_grad);
    std::memcpy(grad.data_ptr(), local_grad.data(), grad.nbytes());
    std::vector<tutti::Tensor> tensors = {grad};
    auto work = pg->allreduce(tensors, {.reduce_op = tutti::ReduceOp::AVG});
    std::vector<tutti::Tensor> losses = {loss};
    pg->allreduce(losses, {.reduce_op = tutti::ReduceOp::AVG})->wait();
    work->wait();
    for (int j = 0; j <= kFeatures; ++j) w[j] -= lr * grad.data<float>()[j];
    const float mean_loss = loss.data<float>()[0];
    if (step == 0) first_loss = mean_loss;
    last_loss = mean_loss;
    if (rank == 0 && (step % 20 == 0 || step == steps - 1)) {
      std::printf("step %4d  loss %.4f\n", step, mean_loss);
    }
  }

  // Every rank's weights, side by side, compared byte for byte.
  tutti::Tensor mine = tutti::Tensor::from_blob(w.data(), {kFeatures + 1}, tutti::DType::Float32);
  tutti::Tensor all = tutti::Tensor::zeros({size, kFeatures + 1}, tutti::DType::Float32);
  pg->allgather_into_tensor(all, mine)->wait();
  bool identical = true;
  for (int r = 0; r < size; ++r) {
    identical &= std::memcmp(all.narrow(0, r, 1).data_ptr(), w.data(), mine.nbytes()) == 0;
  }
  const bool learned = last_loss < 0.7f * first_loss;
  if (rank == 0) {
    std::printf("loss %.4f -> %.4f over %d steps on %d ranks (%s)\n", first_loss, last_loss, steps,
                size, learned ? "falling" : "NOT falling");
    std::printf("weights bitwise identical on all %d ranks: %s\n", size, identical ? "yes" : "NO");
  }
  pg->barrier()->wait();
  return identical && learned ? 0 : 1;
}
