#include "runtime/zigzag_plan.h"

#include <algorithm>
#include <optional>

#include "common/check.h"

namespace strata::runtime {

const char* action_name(ActionKind kind) {
  switch (kind) {
    case ActionKind::kDiskRead: return "disk_read";
    case ActionKind::kLoadWeights: return "load_weights";
    case ActionKind::kEmbed: return "embed";
    case ActionKind::kLayer: return "layer";
    case ActionKind::kStoreKv: return "store_kv";
    case ActionKind::kPreAttention: return "pre_attention";
    case ActionKind::kQkvToHost: return "qkv_to_host";
    case ActionKind::kCpuAttention: return "cpu_attention";
    case ActionKind::kPostAttention: return "post_attention";
    case ActionKind::kHead: return "head";
  }
  return "?";
}

const char* plan_resource_name(PlanResource r) {
  switch (r) {
    case PlanResource::kDisk: return "disk";
    case PlanResource::kH2d: return "h2d";
    case PlanResource::kD2h: return "d2h";
    case PlanResource::kGpu: return "gpu";
    case PlanResource::kCpu: return "cpu";
  }
  return "?";
}

PlanResource resource_of(ActionKind kind) {
  switch (kind) {
    case ActionKind::kDiskRead: return PlanResource::kDisk;
    case ActionKind::kLoadWeights: return PlanResource::kH2d;
    case ActionKind::kStoreKv:
    case ActionKind::kQkvToHost: return PlanResource::kD2h;
    case ActionKind::kCpuAttention: return PlanResource::kCpu;
    default: return PlanResource::kGpu;
  }
}

Status check_step_shape(const StepShape& s) {
  const auto units = static_cast<size_t>(s.num_layers) + 1;
  if (s.num_layers < 1) return invalid_argument("step plan: no layers");
  if (s.num_batches < 1) return invalid_argument("step plan: no GPU batches");
  if (s.slots < 2) return invalid_argument("step plan: at least 2 GPU weight slots are needed");
  if (s.disk_staging < 1) return invalid_argument("step plan: at least 1 disk staging buffer is needed");
  if (s.batch_active.size() != static_cast<size_t>(s.num_batches))
    return invalid_argument("step plan: batch_active has " + std::to_string(s.batch_active.size()) +
                            " entries for " + std::to_string(s.num_batches) + " batches");
  if (s.streamed.size() != units || s.from_disk.size() != units)
    return invalid_argument("step plan: streamed/from_disk need one entry per layer and the head");
  for (size_t u = 0; u < units; ++u)
    if (s.from_disk[u] && !s.streamed[u])
      return invalid_argument("step plan: unit " + std::to_string(u) + " is on disk but not streamed");
  if (s.cpu_kv.size() != static_cast<size_t>(s.num_layers) * s.num_batches)
    return invalid_argument("step plan: cpu_kv needs layers x batches entries");
  return Status::ok();
}

namespace {

// Builds the plan; see plan_step().
class Planner {
 public:
  explicit Planner(const StepShape& s) : s_(s) {
    for (int32_t b = 0; b < s.num_batches; ++b)
      if (s.batch_active[b]) active_.push_back(b);
    parts_ = std::max<int32_t>(1, static_cast<int32_t>(active_.size()));
    for (int32_t u = 0; u <= s.num_layers; ++u) {
      if (!s.streamed[u]) continue;
      Stream st;
      st.unit = u;
      st.slot = static_cast<int32_t>(streams_.size()) % s.slots;
      if (s.from_disk[u]) st.staging = disk_units_++ % s.disk_staging;
      streams_.push_back(st);
    }
    stream_of_.assign(static_cast<size_t>(s.num_layers) + 1, -1);
    for (size_t k = 0; k < streams_.size(); ++k) stream_of_[streams_[k].unit] = static_cast<int32_t>(k);
    hidden_.assign(s.num_batches, -1);
  }

  std::vector<Action> run() {
    if (active_.empty()) return {};
    for (int32_t b : active_) {
      Action a = make(ActionKind::kEmbed, -1, b);
      hidden_[b] = emit(std::move(a));
    }
    // Prologue: the first slots - 1 streamed units, whole (nothing runs yet to spread them over).
    issue_disk_reads();
    limit_ = s_.slots - 2;
    while (issue_load_part()) {
    }
    for (int32_t j = 0; j < s_.num_layers; ++j) {
      limit_ = first_stream_at_or_after(j) + s_.slots - 1;
      for (int32_t b : active_) {
        ensure_loaded(j);
        const bool cpu = !s_.prefill && s_.cpu_kv[static_cast<size_t>(j) * s_.num_batches + b];
        if (pending_ && pending_->batch == b) flush_post();
        if (cpu) {
          Action pre = make(ActionKind::kPreAttention, j, b);
          pre.deps = with_loads(j, {hidden_[b]});
          const int32_t pre_i = emit(std::move(pre));
          Action d2h = make(ActionKind::kQkvToHost, j, b);
          d2h.deps = {pre_i};
          const int32_t d2h_i = emit(std::move(d2h));
          Action att = make(ActionKind::kCpuAttention, j, b);
          att.deps = {d2h_i};
          const int32_t att_i = emit(std::move(att));
          hidden_[b] = pre_i;
          if (pending_) flush_post();
          pending_ = Pending{j, b, att_i, pre_i};
        } else {
          Action layer = make(ActionKind::kLayer, j, b);
          layer.deps = with_loads(j, {hidden_[b]});
          const bool store = s_.prefill && s_.cpu_kv[static_cast<size_t>(j) * s_.num_batches + b];
          if (store) {
            layer.staging = kv_stagings_ % 2;
            if (kv_stagings_ >= 2) layer.deps.push_back(stores_[kv_stagings_ - 2]);
          }
          const int32_t layer_i = emit(std::move(layer));
          hidden_[b] = layer_i;
          used(j, layer_i);
          if (store) {
            Action st = make(ActionKind::kStoreKv, j, b);
            st.staging = kv_stagings_ % 2;
            st.deps = {layer_i};
            stores_.push_back(emit(std::move(st)));
            ++kv_stagings_;
          }
        }
        issue_load_part();  // one part per batch: loads are spread over the layer's batches
        issue_disk_reads();
      }
    }
    if (pending_) flush_post();
    limit_ = static_cast<int32_t>(streams_.size());
    ensure_loaded(s_.num_layers);
    for (int32_t b : active_) {
      Action head = make(ActionKind::kHead, s_.num_layers, b);
      head.deps = with_loads(s_.num_layers, {hidden_[b]});
      hidden_[b] = emit(std::move(head));
      used(s_.num_layers, hidden_[b]);
    }
    return std::move(plan_);
  }

 private:
  struct Stream {
    int32_t unit = 0;
    int32_t slot = 0;
    int32_t staging = -1;
    int32_t disk_read = -1;              // action index
    std::vector<int32_t> loads;          // action indices of issued parts
    std::vector<int32_t> users;          // compute actions reading the slot
    int32_t users_expected = 0;
  };
  struct Pending {
    int32_t layer, batch, attention, pre;
  };

  Action make(ActionKind kind, int32_t unit, int32_t batch) const {
    Action a;
    a.kind = kind;
    a.unit = unit;
    a.batch = batch;
    if (unit >= 0 && stream_of_[unit] >= 0) a.slot = streams_[stream_of_[unit]].slot;
    return a;
  }

  int32_t emit(Action a) {
    plan_.push_back(std::move(a));
    return static_cast<int32_t>(plan_.size()) - 1;
  }

  int32_t first_stream_at_or_after(int32_t unit) const {
    for (size_t k = 0; k < streams_.size(); ++k)
      if (streams_[k].unit >= unit) return static_cast<int32_t>(k);
    return static_cast<int32_t>(streams_.size());
  }

  // deps plus every load part of `unit`'s weights (when streamed).
  std::vector<int32_t> with_loads(int32_t unit, std::vector<int32_t> deps) const {
    if (stream_of_[unit] >= 0)
      for (int32_t l : streams_[stream_of_[unit]].loads) deps.push_back(l);
    deps.erase(std::remove(deps.begin(), deps.end(), -1), deps.end());
    return deps;
  }

  void used(int32_t unit, int32_t action) {
    if (stream_of_[unit] >= 0) streams_[stream_of_[unit]].users.push_back(action);
  }

  // Every user of stream k has been issued (its slot can take the next unit).
  bool released(int32_t k) const {
    const Stream& st = streams_[k];
    const int32_t unit = st.unit;
    if (unit == s_.num_layers) return st.users.size() == active_.size();
    int32_t expected = 0;
    for (int32_t b : active_)
      expected += (!s_.prefill && s_.cpu_kv[static_cast<size_t>(unit) * s_.num_batches + b]) ? 2 : 1;
    return static_cast<int32_t>(st.users.size()) == expected;
  }

  // Issues the next load part if its unit is within the prefetch limit and its slot is free.
  bool issue_load_part() {
    if (next_load_ >= static_cast<int32_t>(streams_.size()) || next_load_ > limit_) return false;
    Stream& st = streams_[next_load_];
    const int32_t prev = next_load_ - s_.slots;
    if (prev >= 0 && !released(prev)) return false;
    if (st.staging >= 0 && st.disk_read < 0) {
      issue_disk_reads();
      if (st.disk_read < 0) return false;
    }
    Action a = make(ActionKind::kLoadWeights, st.unit, -1);
    a.part = next_part_;
    a.parts = parts_;
    a.staging = st.staging;
    if (prev >= 0) a.deps = streams_[prev].users;
    if (st.disk_read >= 0) a.deps.push_back(st.disk_read);
    st.loads.push_back(emit(std::move(a)));
    if (++next_part_ == parts_) {
      next_part_ = 0;
      ++next_load_;
    }
    return true;
  }

  // Reads ahead every disk unit whose staging buffer's previous occupant has been fully loaded.
  void issue_disk_reads() {
    while (next_disk_ < static_cast<int32_t>(streams_.size())) {
      Stream& st = streams_[next_disk_];
      if (st.staging < 0) {
        ++next_disk_;
        continue;
      }
      // The previous unit in the same staging buffer.
      std::optional<int32_t> prev;
      int32_t seen = 0;
      for (int32_t k = next_disk_ - 1; k >= 0; --k)
        if (streams_[k].staging >= 0 && ++seen == s_.disk_staging) {
          prev = k;
          break;
        }
      std::vector<int32_t> deps;
      if (prev) {
        const Stream& p = streams_[*prev];
        if (static_cast<int32_t>(p.loads.size()) < parts_) return;  // its copy is not issued yet
        deps = p.loads;
      }
      Action a = make(ActionKind::kDiskRead, st.unit, -1);
      a.staging = st.staging;
      a.deps = std::move(deps);
      st.disk_read = emit(std::move(a));
      ++next_disk_;
    }
  }

  // Issues whatever remains of the loads up to `unit`'s (the compute about to run needs them).
  void ensure_loaded(int32_t unit) {
    if (stream_of_[unit] < 0) return;
    const int32_t k = stream_of_[unit];
    const int32_t saved = limit_;
    limit_ = std::max(limit_, k);
    while (next_load_ <= k) {
      const bool issued = issue_load_part();
      STRATA_CHECK(issued, "step plan: the slot of a unit about to run is still in use");
    }
    limit_ = saved;
  }

  void flush_post() {
    Action post = make(ActionKind::kPostAttention, pending_->layer, pending_->batch);
    post.deps = with_loads(pending_->layer, {pending_->attention, pending_->pre});
    const int32_t i = emit(std::move(post));
    hidden_[pending_->batch] = i;
    used(pending_->layer, pending_->pre);
    used(pending_->layer, i);
    pending_.reset();
  }

  const StepShape& s_;
  std::vector<int32_t> active_;
  int32_t parts_ = 1;
  std::vector<Stream> streams_;
  std::vector<int32_t> stream_of_;
  int32_t disk_units_ = 0;
  std::vector<int32_t> hidden_;  // last action writing each batch's hidden state
  std::optional<Pending> pending_;
  std::vector<int32_t> stores_;
  int32_t kv_stagings_ = 0;
  int32_t next_load_ = 0, next_part_ = 0, next_disk_ = 0;
  int32_t limit_ = 0;
  std::vector<Action> plan_;
};

}  // namespace

std::vector<Action> plan_step(const StepShape& shape) {
  STRATA_CHECK(check_step_shape(shape).is_ok(), check_step_shape(shape).to_string());
  return Planner(shape).run();
}

Simulation simulate(const std::vector<Action>& plan, DurationFn duration, const void* context) {
  Simulation sim;
  sim.times.resize(plan.size());
  double lane_free[kNumPlanResources] = {};
  for (size_t i = 0; i < plan.size(); ++i) {
    const Action& a = plan[i];
    const int r = static_cast<int>(resource_of(a.kind));
    double start = lane_free[r];
    for (int32_t d : a.deps) {
      STRATA_CHECK(d >= 0 && static_cast<size_t>(d) < i, "simulate: a dependency on a later action");
      start = std::max(start, sim.times[d].end);
    }
    const double len = duration(a, context);
    sim.times[i] = {start, start + len};
    lane_free[r] = start + len;
    sim.busy[r] += len;
    sim.makespan = std::max(sim.makespan, start + len);
  }
  return sim;
}

std::string describe(const Action& a) {
  std::string s = action_name(a.kind);
  if (a.unit >= 0) s += " L" + std::to_string(a.unit);
  if (a.batch >= 0) s += " b" + std::to_string(a.batch);
  if (a.kind == ActionKind::kLoadWeights)
    s += " part " + std::to_string(a.part + 1) + "/" + std::to_string(a.parts);
  if (a.slot >= 0) s += " slot " + std::to_string(a.slot);
  if (a.staging >= 0) s += " staging " + std::to_string(a.staging);
  return s;
}

}  // namespace strata::runtime
