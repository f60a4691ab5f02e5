#include "offload/plan.h"

#include <algorithm>
#include <optional>

#include "common/check.h"

namespace strata::offload {

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
    // Off-GPU KV units in the order the step reaches them.
    kv_of_.assign(static_cast<size_t>(s.num_layers) * s.num_batches, -1);
    int32_t disk_units = 0, gpu_stagings = 0;
    for (int32_t j = 0; j < s.num_layers; ++j)
      for (int32_t b : active_) {
        const size_t i = static_cast<size_t>(j) * s.num_batches + b;
        const bool disk = !s.disk_kv.empty() && s.disk_kv[i];
        if (!s.cpu_kv[i] && !disk) continue;
        KvUnit u;
        u.layer = j;
        u.batch = b;
        if (disk) u.host_staging = disk_units++ % s.kv_disk_staging;
        if (s.prefill || s.gpu_attention) u.gpu_staging = gpu_stagings++ % 2;
        kv_of_[i] = static_cast<int32_t>(kv_.size());
        kv_.push_back(u);
      }
    // Uses of the GPU hidden-state staging by batches whose hidden states live on the CPU, in
    // the order the step makes them: embeds, layers, heads.
    hidden_of_.assign(static_cast<size_t>(s.num_layers + 2) * s.num_batches, -1);
    for (int32_t unit = -1; unit <= s.num_layers; ++unit)
      for (int32_t b : active_) {
        if (s.cpu_activations.empty() || !s.cpu_activations[b]) continue;
        HiddenUse h;
        h.unit = unit;
        h.batch = b;
        h.buffer = static_cast<int32_t>(huses_.size()) % 2;
        hidden_of_[static_cast<size_t>(unit + 1) * s.num_batches + b] = static_cast<int32_t>(huses_.size());
        huses_.push_back(h);
      }
  }

  std::vector<Action> run() {
    if (active_.empty()) return {};
    for (int32_t b : active_) {
      Action a = make(ActionKind::kEmbed, -1, b);
      const int32_t h = hidden_use(-1, b);
      if (h >= 0) {
        a.hidden_staging = huses_[h].buffer;
        const int32_t free = hidden_staging_free(h);
        STRATA_CHECK(free != -2, "step plan: a hidden-state staging buffer is still in use");
        if (free >= 0) a.deps = {free};
      }
      hidden_[b] = emit(std::move(a));
      if (h >= 0) {
        store_hidden(h, hidden_[b]);
        ++hidden_done_;
      }
    }
    // Prologue: the first slots - 1 streamed units, whole (nothing runs yet to spread them over),
    // and the first batches' KV and hidden states.
    issue_disk_reads();
    issue_kv_ahead();
    issue_hidden_ahead();
    limit_ = s_.slots - 2;
    while (issue_load_part()) {
    }
    for (int32_t j = 0; j < s_.num_layers; ++j) {
      limit_ = first_stream_at_or_after(j) + s_.slots - 1;
      for (int32_t b : active_) {
        ensure_loaded(j);
        if (pending_ && pending_->batch == b) flush_post();
        const int32_t k = kv_of_[static_cast<size_t>(j) * s_.num_batches + b];
        if (k >= 0 && !s_.prefill && !s_.gpu_attention) {
          cpu_attention(j, b, k);
        } else {
          gpu_layer(j, b, k);
        }
        if (k >= 0) ++kv_done_;
        if (hidden_use(j, b) >= 0) ++hidden_done_;
        issue_kv_ahead();   // the next batches' KV and hidden states, ahead of the weights
        issue_hidden_ahead();
        issue_load_part();  // one part per batch: loads are spread over the layer's batches
        issue_disk_reads();
      }
      if (block(j)) experts(j);
    }
    if (pending_) flush_post();
    limit_ = static_cast<int32_t>(streams_.size());
    ensure_loaded(s_.num_layers);
    for (int32_t b : active_) {
      Action head = make(ActionKind::kHead, s_.num_layers, b);
      head.deps = with_loads(s_.num_layers, {hidden_[b]});
      add_experts_before(s_.num_layers, head);
      const int32_t h = hidden_use(s_.num_layers, b);
      if (h >= 0) load_hidden_into(h, head);
      hidden_[b] = emit(std::move(head));
      used(s_.num_layers, hidden_[b]);
      if (h >= 0) {
        huses_[h].last = hidden_[b];
        ++hidden_done_;
        issue_hidden_ahead();
      }
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
  // A (layer, batch) whose KV is off the GPU: its staging buffers and the actions on them.
  struct KvUnit {
    int32_t layer = 0, batch = 0;
    int32_t host_staging = -1;  // disk KV
    int32_t gpu_staging = -1;   // prefill, or decode with attention on the GPU
    int32_t read = -1, load = -1, store = -1, write = -1;  // action indices
  };

  bool disk(const KvUnit& u) const { return u.host_staging >= 0; }

  // Layer j's experts run once over the step's rows (its kExperts), not in each batch's action.
  bool block(int32_t j) const { return j >= 0 && j < s_.num_layers && !s_.block_experts.empty() && s_.block_experts[j]; }

  // After every batch's action of layer j: its router and experts over all of their rows.
  void experts(int32_t j) {
    if (pending_) flush_post();
    std::vector<int32_t> deps;
    for (int32_t b : active_) deps.push_back(hidden_[b]);
    Action a = make(ActionKind::kExperts, j, -1);
    a.deps = with_loads(j, std::move(deps));
    experts_ = emit(std::move(a));
    used(j, experts_);
  }
  // A batch's first action at `unit` adds the previous layer's expert output first.
  void add_experts_before(int32_t unit, Action& a) const {
    if (!block(unit - 1)) return;
    STRATA_CHECK(experts_ >= 0, "step plan: a layer's experts have not run before the next layer");
    a.add_experts = true;
    a.deps.push_back(experts_);
  }

  // A use of the hidden-state staging by a batch whose hidden states live on the CPU: its embed
  // (unit -1), a layer, or its head (unit num_layers).
  struct HiddenUse {
    int32_t unit = 0, batch = 0, buffer = 0;
    int32_t load = -1;   // kLoadHidden (layers and heads)
    int32_t store = -1;  // kStoreHidden (embeds and layers)
    int32_t last = -1;   // the last action on the buffer: the store, or the head
  };
  int32_t hidden_use(int32_t unit, int32_t b) const {
    return hidden_of_[static_cast<size_t>(unit + 1) * s_.num_batches + b];
  }
  // The last action of the use before huses_[h] in the same buffer (-1: none; -2: not issued).
  int32_t hidden_staging_free(int32_t h) const {
    if (h < 2) return -1;
    return huses_[h - 2].last >= 0 ? huses_[h - 2].last : -2;
  }
  // The store of the batch's previous use (its hidden states on the host), or -2 if not issued.
  int32_t hidden_stored_before(int32_t h) const {
    for (int32_t p = h - 1; p >= 0; --p)
      if (huses_[p].batch == huses_[h].batch) return huses_[p].store >= 0 ? huses_[p].store : -2;
    STRATA_CHECK(false, "step plan: a hidden-state load with no store before it");
    return -2;
  }
  bool issue_hidden_load(int32_t h) {
    HiddenUse& u = huses_[h];
    if (u.load >= 0 || u.unit < 0) return true;
    const int32_t free = hidden_staging_free(h), stored = hidden_stored_before(h);
    if (free == -2 || stored == -2) return false;
    Action a = make(ActionKind::kLoadHidden, u.unit, u.batch);
    a.slot = -1;
    a.hidden_staging = u.buffer;
    a.deps = {stored};
    if (free >= 0) a.deps.push_back(free);
    u.load = emit(std::move(a));
    return true;
  }
  // Loads run one use ahead of the computing one, once the buffer and the data are ready.
  void issue_hidden_ahead() {
    const int32_t n = static_cast<int32_t>(huses_.size());
    for (int32_t h = hidden_done_; h < n && h <= hidden_done_ + 1; ++h)
      if (!issue_hidden_load(h)) break;
  }
  void load_hidden_into(int32_t h, Action& compute) {
    STRATA_CHECK(issue_hidden_load(h), "step plan: the hidden states of a batch about to run are not ready");
    compute.hidden_staging = huses_[h].buffer;
    compute.deps.push_back(huses_[h].load);
  }
  void store_hidden(int32_t h, int32_t after) {
    Action a = make(ActionKind::kStoreHidden, huses_[h].unit, huses_[h].batch);
    a.slot = -1;
    a.hidden_staging = huses_[h].buffer;
    a.deps = {after};
    huses_[h].store = huses_[h].last = emit(std::move(a));
  }

  // The unit that used the same staging buffer before kv_[k] (kv_ index), or -1.
  int32_t previous_in_host_staging(int32_t k) const {
    int32_t seen = 0;
    for (int32_t p = k - 1; p >= 0; --p)
      if (disk(kv_[p]) && ++seen == s_.kv_disk_staging) return p;
    return -1;
  }
  int32_t previous_in_gpu_staging(int32_t k) const {
    int32_t seen = 0;
    for (int32_t p = k - 1; p >= 0; --p)
      if (kv_[p].gpu_staging >= 0 && ++seen == 2) return p;
    return -1;
  }
  // The last action on the staging buffer of the unit before kv_[k] in it (-1: none), or -2
  // when that action is not issued yet.
  int32_t host_staging_free(int32_t k) const {
    const int32_t p = previous_in_host_staging(k);
    if (p < 0) return -1;
    return kv_[p].write >= 0 ? kv_[p].write : -2;
  }
  int32_t gpu_staging_free(int32_t k) const {
    const int32_t p = previous_in_gpu_staging(k);
    if (p < 0) return -1;
    return kv_[p].store >= 0 ? kv_[p].store : -2;
  }

  // Decode reads disk KV up to kv_disk_staging - 2 batches ahead of the one computing, and loads
  // KV for attention on the GPU one batch ahead, each once its staging buffer is free.
  void issue_kv_ahead() {
    if (s_.prefill) return;
    const int32_t n = static_cast<int32_t>(kv_.size());
    for (int32_t k = kv_done_; k < n && k <= kv_done_ + s_.kv_disk_staging - 2; ++k)
      if (disk(kv_[k]) && kv_[k].read < 0 && !issue_kv_read(k)) break;
    if (s_.gpu_attention && kv_done_ < n && kv_[kv_done_].load < 0) issue_kv_load(kv_done_);
    if (s_.gpu_attention && kv_done_ + 1 < n && kv_[kv_done_ + 1].load < 0) issue_kv_load(kv_done_ + 1);
  }

  bool issue_kv_read(int32_t k) {
    KvUnit& u = kv_[k];
    if (u.read >= 0) return true;
    // Reads go in unit order.
    for (int32_t p = 0; p < k; ++p)
      if (disk(kv_[p]) && kv_[p].read < 0 && !issue_kv_read(p)) return false;
    const int32_t free = host_staging_free(k);
    if (free == -2) return false;
    Action a = make(ActionKind::kReadKv, u.layer, u.batch);
    a.host_staging = u.host_staging;
    if (free >= 0) a.deps = {free};
    u.read = emit(std::move(a));
    return true;
  }

  bool issue_kv_load(int32_t k) {
    KvUnit& u = kv_[k];
    if (u.load >= 0) return true;
    if (k > 0 && kv_[k - 1].load < 0 && !issue_kv_load(k - 1)) return false;
    const int32_t free = gpu_staging_free(k);
    if (free == -2) return false;
    if (disk(u) && !issue_kv_read(k)) return false;
    Action a = make(ActionKind::kLoadKv, u.layer, u.batch);
    a.staging = u.gpu_staging;
    a.host_staging = u.host_staging;
    if (free >= 0) a.deps.push_back(free);
    if (disk(u)) a.deps.push_back(u.read);
    u.load = emit(std::move(a));
    return true;
  }

  // Decode over CPU or disk KV with attention on the CPU.
  void cpu_attention(int32_t j, int32_t b, int32_t k) {
    KvUnit& u = kv_[k];
    if (disk(u)) STRATA_CHECK(issue_kv_read(k), "step plan: the KV staging of a batch about to run is still in use");
    Action pre = make(ActionKind::kPreAttention, j, b);
    pre.deps = with_loads(j, {hidden_[b]});
    add_experts_before(j, pre);
    const int32_t h = hidden_use(j, b);
    if (h >= 0) load_hidden_into(h, pre);
    const int32_t pre_i = emit(std::move(pre));
    Action d2h = make(ActionKind::kQkvToHost, j, b);
    d2h.deps = {pre_i};
    const int32_t d2h_i = emit(std::move(d2h));
    Action att = make(ActionKind::kCpuAttention, j, b);
    att.deps = {d2h_i};
    att.host_staging = u.host_staging;
    if (disk(u)) att.deps.push_back(u.read);
    const int32_t att_i = emit(std::move(att));
    if (disk(u)) {
      Action w = make(ActionKind::kWriteKv, j, b);
      w.host_staging = u.host_staging;
      w.deps = {att_i};
      u.write = emit(std::move(w));
    }
    hidden_[b] = pre_i;
    if (pending_) flush_post();
    pending_ = Pending{j, b, att_i, pre_i};
  }

  // A whole layer on the GPU; off-GPU KV (k >= 0) goes through a GPU staging buffer.
  void gpu_layer(int32_t j, int32_t b, int32_t k) {
    Action layer = make(ActionKind::kLayer, j, b);
    layer.deps = with_loads(j, {hidden_[b]});
    add_experts_before(j, layer);
    layer.defer_experts = block(j);
    const int32_t h = hidden_use(j, b);
    if (h >= 0) load_hidden_into(h, layer);
    if (k >= 0) {
      KvUnit& u = kv_[k];
      layer.staging = u.gpu_staging;
      if (s_.prefill) {
        const int32_t free = gpu_staging_free(k);
        STRATA_CHECK(free != -2, "step plan: a GPU KV staging buffer is still in use");
        if (free >= 0) layer.deps.push_back(free);
      } else {
        STRATA_CHECK(issue_kv_load(k), "step plan: the KV staging of a batch about to run is still in use");
        layer.deps.push_back(u.load);
      }
    }
    const int32_t layer_i = emit(std::move(layer));
    hidden_[b] = layer_i;
    used(j, layer_i);
    if (h >= 0) store_hidden(h, layer_i);
    if (k < 0) return;
    KvUnit& u = kv_[k];
    Action st = make(ActionKind::kStoreKv, j, b);
    st.staging = u.gpu_staging;
    st.host_staging = u.host_staging;
    st.deps = {layer_i};
    if (disk(u) && s_.prefill) {
      const int32_t free = host_staging_free(k);
      STRATA_CHECK(free != -2, "step plan: a disk KV staging buffer is still in use");
      if (free >= 0) st.deps.push_back(free);
    }
    u.store = emit(std::move(st));
    if (disk(u)) {
      Action w = make(ActionKind::kWriteKv, j, b);
      w.host_staging = u.host_staging;
      w.deps = {u.store};
      u.write = emit(std::move(w));
    }
  }

  Action make(ActionKind kind, int32_t unit, int32_t batch) const {
    Action a;
    a.kind = kind;
    a.unit = unit;
    a.batch = batch;
    const bool kv_transfer = kind == ActionKind::kReadKv || kind == ActionKind::kLoadKv || kind == ActionKind::kWriteKv;
    if (unit >= 0 && stream_of_[unit] >= 0 && !kv_transfer) a.slot = streams_[stream_of_[unit]].slot;
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
      expected += (!s_.prefill && !s_.gpu_attention && kv_of_[static_cast<size_t>(unit) * s_.num_batches + b] >= 0) ? 2 : 1;
    if (block(unit)) ++expected;  // its kExperts
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
    post.defer_experts = block(pending_->layer);
    const int32_t h = hidden_use(pending_->layer, pending_->batch);
    if (h >= 0) post.hidden_staging = huses_[h].buffer;
    const int32_t i = emit(std::move(post));
    hidden_[pending_->batch] = i;
    used(pending_->layer, pending_->pre);
    used(pending_->layer, i);
    pending_.reset();
    if (h >= 0) store_hidden(h, i);
  }

  const StepShape& s_;
  std::vector<int32_t> active_;
  int32_t parts_ = 1;
  std::vector<Stream> streams_;
  std::vector<int32_t> stream_of_;
  int32_t disk_units_ = 0;
  std::vector<int32_t> hidden_;  // last action writing each batch's hidden state
  std::optional<Pending> pending_;
  std::vector<int32_t> kv_of_;  // [layer * batches + batch]: index into kv_, or -1 (KV on the GPU)
  std::vector<KvUnit> kv_;
  int32_t kv_done_ = 0;  // kv_ units computed so far
  std::vector<int32_t> hidden_of_;  // [(unit + 1) * batches + batch]: index into huses_, or -1
  std::vector<HiddenUse> huses_;
  int32_t hidden_done_ = 0;  // huses_ computed so far
  int32_t experts_ = -1;     // the last kExperts action
  int32_t next_load_ = 0, next_part_ = 0, next_disk_ = 0;
  int32_t limit_ = 0;
  std::vector<Action> plan_;
};

}  // namespace

std::vector<Action> plan_step(const StepShape& shape) {
  STRATA_CHECK(check_step_shape(shape).is_ok(), check_step_shape(shape).to_string());
  return Planner(shape).run();
}

}  // namespace strata::offload
