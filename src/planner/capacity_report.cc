// Rendering of a CapacityReport: Markdown tables and a self-contained HTML page with inline SVG
// charts (no scripts, no external resources).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "common/units.h"
#include "planner/capacity.h"

namespace strata::planner {

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string duration(double s) {
  if (s <= 0) return "-";
  if (s < 120) return fmt("%.0f s", s);
  if (s < 7200) return fmt("%.0f min", s / 60);
  if (s < 3 * 86400) return fmt("%.1f h", s / 3600);
  return fmt("%.1f days", s / 86400);
}

std::string gib(uint64_t b) { return fmt("%.0f GiB", static_cast<double>(b) / static_cast<double>(kGiB)); }

std::string money(double v, const std::string& currency) {
  if (v <= 0) return "-";
  return (currency == "USD" ? std::string("$") : currency + " ") + fmt(v < 10 ? "%.2f" : "%.0f", v);
}

std::string disk_label(const CapacityPoint& p) { return p.disk_unused ? p.disk + " (unused)" : p.disk; }

std::string rate(double t) { return t >= 100 ? fmt("%.0f", t) : t >= 1 ? fmt("%.1f", t) : fmt("%.3f", t); }

std::string placement(const Policy& p) {
  const auto& f = p.fractions;
  auto pc = [](double v) { return fmt("%.0f", 100 * v); };
  std::string s = std::to_string(p.batch.gpu_batch_size) + "x" + std::to_string(p.batch.num_gpu_batches) +
                  "; W " + pc(f[kWg]) + "/" + pc(f[kWc]) + "/" + pc(f[kWd]) + "; KV " + pc(f[kCg]) + "/" +
                  pc(f[kCc]) + "/" + pc(f[kCd]) + " (" + std::string(attention_name(p.choices.attention)) + ")";
  if (p.choices.weights == Compression::kInt4) s += "; int4 W";
  if (p.choices.kv == Compression::kInt4) s += "; int4 KV";
  return s;
}

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

// For each machine, the best point (shortest job) over all DRAM sizes and disks, and for each
// (machine, DRAM) the best over disks.
struct Bests {
  std::vector<std::string> machines;  // in report order
  std::vector<uint64_t> drams;        // ascending
  std::map<std::string, const CapacityPoint*> overall;
  std::map<std::pair<std::string, uint64_t>, const CapacityPoint*> by_dram;
};

template <typename Map, typename Key>
const CapacityPoint* lookup(const Map& m, const Key& k) {
  auto it = m.find(k);
  return it == m.end() ? nullptr : it->second;
}

bool better(const CapacityPoint& a, const CapacityPoint* b) {
  if (!a.feasible) return false;
  if (!b || !b->feasible) return true;
  if (a.job_s != b->job_s) return a.job_s < b->job_s;
  return a.cost < b->cost;
}

Bests bests(const CapacityReport& r) {
  Bests b;
  std::set<uint64_t> drams;
  for (const auto& p : r.points) {
    if (std::find(b.machines.begin(), b.machines.end(), p.machine) == b.machines.end()) b.machines.push_back(p.machine);
    drams.insert(p.dram_bytes);
    auto& o = b.overall[p.machine];
    if (better(p, o)) o = &p;
    auto& d = b.by_dram[{p.machine, p.dram_bytes}];
    if (!d || better(p, d)) d = &p;
  }
  b.drams.assign(drams.begin(), drams.end());
  return b;
}

const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string bottleneck_color(const std::string& b) {
  static const std::map<std::string, std::string> kColors = {
      {"gpu_compute", "#4e79a7"}, {"cpu_compute", "#f28e2b"}, {"h2d", "#e15759"},
      {"d2h", "#ff9da7"},         {"pcie_duplex", "#b07aa1"}, {"disk_read", "#59a14f"},
      {"disk_write", "#8cd17d"},  {"dram", "#edc948"}};
  auto it = kColors.find(b);
  return it == kColors.end() ? "#bab0ac" : it->second;
}

// The bottlenecks, in legend order; the chart marks each with its own shape.
const char* const kBottlenecks[] = {"gpu_compute", "cpu_compute", "h2d", "d2h", "pcie_duplex", "disk_read", "disk_write", "dram"};

// An SVG marker of shape `shape` (0-7, else a circle) centred at (x, y), filled with `fill`.
std::string marker(size_t shape, double x, double y, const std::string& fill, const std::string& title) {
  const double r = 6;
  auto pts = [&](std::initializer_list<std::pair<double, double>> ps) {
    std::string d = "<polygon points=\"";
    for (auto [dx, dy] : ps) d += fmt("%.1f", x + dx * r) + "," + fmt("%.1f", y + dy * r) + " ";
    return d + "\"";
  };
  std::string open;
  switch (shape) {
    case 1: open = pts({{-0.85, -0.85}, {0.85, -0.85}, {0.85, 0.85}, {-0.85, 0.85}}); break;            // square
    case 2: open = pts({{0, -1.1}, {1, 0.8}, {-1, 0.8}}); break;                                          // triangle up
    case 3: open = pts({{-1, -0.8}, {1, -0.8}, {0, 1.1}}); break;                                         // triangle down
    case 4: open = pts({{0, -1.2}, {1.1, 0}, {0, 1.2}, {-1.1, 0}}); break;                                // diamond
    case 5: open = pts({{-0.35, -1}, {0.35, -1}, {0.35, -0.35}, {1, -0.35}, {1, 0.35}, {0.35, 0.35}, {0.35, 1},
                        {-0.35, 1}, {-0.35, 0.35}, {-1, 0.35}, {-1, -0.35}, {-0.35, -0.35}});
            break;                                                                                       // plus
    case 6: open = pts({{0, -1.1}, {1.05, -0.35}, {0.65, 0.9}, {-0.65, 0.9}, {-1.05, -0.35}}); break;   // pentagon
    case 7: open = pts({{-0.5, -0.9}, {0.5, -0.9}, {1, 0}, {0.5, 0.9}, {-0.5, 0.9}, {-1, 0}}); break;     // hexagon
    default: open = "<circle cx=\"" + fmt("%.1f", x) + "\" cy=\"" + fmt("%.1f", y) + "\" r=\"" + fmt("%.1f", r) + "\"";
  }
  return open + " fill=\"" + fill + "\" stroke=\"#222\" stroke-width=\"1\"><title>" + title + "</title>" +
         (shape >= 1 && shape <= 7 ? "</polygon>" : "</circle>") + "\n";
}

size_t bottleneck_shape(const std::string& b) {
  for (size_t i = 0; i < std::size(kBottlenecks); ++i)
    if (b == kBottlenecks[i]) return i;
  return 0;
}

// The largest of 1, 2, 5 x 10^k at most v (down) or the smallest at least v (up), as log10.
double nice_log10(double v, bool up) {
  const double e = std::floor(std::log10(v));
  const double steps[] = {1, 2, 5, 10};
  if (up) {
    for (double m : steps)
      if (m * std::pow(10, e) >= v * (1 - 1e-12)) return std::log10(m * std::pow(10, e));
  }
  for (int i = 2; i >= 0; --i)
    if (steps[i] * std::pow(10, e) <= v * (1 + 1e-12)) return std::log10(steps[i] * std::pow(10, e));
  return e;
}

// Throughput against DRAM size: one line per machine (its colour), log-scale y from the nearest
// 1-2-5 step below the lowest point to the nearest above the highest, a marker per point whose
// shape is its bottleneck.
std::string throughput_chart(const CapacityReport& r, const Bests& b) {
  (void)r;
  auto job_rate = [](const CapacityPoint& p) { return p.tokens_per_s; };
  const double W = 960, H = 440, L = 80, R = 200, T = 40, B = 60;
  double lo = 1e300, hi = 0;
  for (auto& [k, p] : b.by_dram)
    if (p && p->feasible) lo = std::min(lo, job_rate(*p)), hi = std::max(hi, job_rate(*p));
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
    << " " << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s << "<text x=\"" << L << "\" y=\"22\" font-size=\"15\" font-weight=\"bold\">Throughput (generated tokens / job time, log scale) "
       "against DRAM, best disk per point</text>\n";
  if (hi <= 0) {
    s << "<text x=\"" << L << "\" y=\"" << H / 2 << "\">no configuration fits this job</text></svg>\n";
    return s.str();
  }
  double y0 = nice_log10(lo, false), y1 = nice_log10(hi, true);
  if (y1 - y0 < 0.3) y0 = y1 - 0.3;  // one point, or all alike: still a readable span
  const size_t nx = b.drams.size();
  auto X = [&](size_t i) { return L + (nx == 1 ? 0.5 : static_cast<double>(i) / (nx - 1)) * (W - L - R); };
  auto Y = [&](double v) { return T + (1 - (std::log10(v) - y0) / (y1 - y0)) * (H - T - B); };
  s << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W - L - R << "\" height=\"" << H - T - B
    << "\" fill=\"none\" stroke=\"#999\"/>\n";
  for (double e = std::floor(y0); e <= y1 + 1e-9; e += 1) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10, e);
      if (std::log10(v) < y0 - 1e-9) continue;
      if (std::log10(v) > y1 + 1e-9) break;
      const double y = Y(v);
      s << "<line x1=\"" << L << "\" x2=\"" << W - R << "\" y1=\"" << y << "\" y2=\"" << y << "\" stroke=\""
        << (m == 1 ? "#ccc" : "#eee") << "\"/>\n";
      s << "<text x=\"" << L - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">" << rate(v) << "</text>\n";
    }
  }
  for (size_t i = 0; i < nx; ++i)
    s << "<text x=\"" << X(i) << "\" y=\"" << H - B + 18 << "\" text-anchor=\"middle\">" << gib(b.drams[i])
      << "</text>\n";
  s << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 12 << "\" text-anchor=\"middle\">host DRAM</text>\n";
  for (size_t m = 0; m < b.machines.size(); ++m) {
    const std::string color = kPalette[m % 10];
    std::string path;
    for (size_t i = 0; i < nx; ++i) {
      auto it = b.by_dram.find({b.machines[m], b.drams[i]});
      if (it == b.by_dram.end() || !it->second || !it->second->feasible) continue;
      path += (path.empty() ? "M" : " L") + fmt("%.1f", X(i)) + "," + fmt("%.1f", Y(job_rate(*it->second)));
    }
    if (!path.empty())
      s << "<path d=\"" << path << "\" fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\"/>\n";
    for (size_t i = 0; i < nx; ++i) {
      auto it = b.by_dram.find({b.machines[m], b.drams[i]});
      if (it == b.by_dram.end() || !it->second || !it->second->feasible) continue;
      const CapacityPoint& p = *it->second;
      s << marker(bottleneck_shape(p.bottleneck), X(i), Y(job_rate(p)), color,
                  escape(p.machine) + ", " + gib(p.dram_bytes) + ", " + escape(p.disk) + ": " + rate(job_rate(p)) +
                      " tokens/s over the job, bottleneck " + p.bottleneck);
    }
    const double ly = T + 16 * static_cast<double>(m);
    s << "<line x1=\"" << W - R + 14 << "\" x2=\"" << W - R + 34 << "\" y1=\"" << ly + 6 << "\" y2=\"" << ly + 6
      << "\" stroke=\"" << color << "\" stroke-width=\"3\"/><text x=\"" << W - R + 40 << "\" y=\"" << ly + 10
      << "\">" << escape(b.machines[m]) << "</text>\n";
  }
  // The shapes' legend, below the machines'.
  const double sy = T + 16 * static_cast<double>(b.machines.size()) + 24;
  s << "<text x=\"" << W - R + 14 << "\" y=\"" << sy << "\" font-weight=\"bold\">bottleneck</text>\n";
  for (size_t k = 0; k < std::size(kBottlenecks); ++k) {
    const double y = sy + 18 * static_cast<double>(k + 1);
    s << marker(k, W - R + 24, y - 4, "#fff", kBottlenecks[k]) << "<text x=\"" << W - R + 40 << "\" y=\"" << y
      << "\">" << kBottlenecks[k] << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

// Horizontal bars, one per machine: its best job's time or cost.
std::string bar_chart(const std::string& title, const Bests& b, bool cost, const std::string& currency) {
  const double W = 960, row = 26, L = 140, R = 250, T = 36;
  const double H = T + row * static_cast<double>(b.machines.size()) + 16;
  double hi = 0;
  for (auto& [m, p] : b.overall)
    if (p && p->feasible) hi = std::max(hi, cost ? p->cost : p->job_s);
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
    << " " << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s << "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">" << escape(title) << "</text>\n";
  for (size_t m = 0; m < b.machines.size(); ++m) {
    const double y = T + row * static_cast<double>(m);
    s << "<text x=\"" << L - 8 << "\" y=\"" << y + 16 << "\" text-anchor=\"end\">" << escape(b.machines[m])
      << "</text>\n";
    auto it = b.overall.find(b.machines[m]);
    const CapacityPoint* p = it == b.overall.end() ? nullptr : it->second;
    if (!p || !p->feasible) {
      s << "<text x=\"" << L + 4 << "\" y=\"" << y + 16 << "\" fill=\"#a00\">does not fit</text>\n";
      continue;
    }
    const double v = cost ? p->cost : p->job_s;
    if (cost && v <= 0) {
      s << "<text x=\"" << L + 4 << "\" y=\"" << y + 16 << "\" fill=\"#666\">no price</text>\n";
      continue;
    }
    const double w = hi > 0 ? std::max(2.0, v / hi * (W - L - R)) : 2;
    s << "<rect x=\"" << L << "\" y=\"" << y + 4 << "\" width=\"" << w << "\" height=\"" << row - 8 << "\" fill=\""
      << bottleneck_color(p->bottleneck) << "\"><title>" << escape(p->machine) << ", " << gib(p->dram_bytes) << ", "
      << escape(p->disk) << "; bottleneck " << p->bottleneck << "</title></rect>\n";
    s << "<text x=\"" << L + w + 6 << "\" y=\"" << y + 16 << "\">"
      << (cost ? money(v, currency) : duration(v)) << " (" << gib(p->dram_bytes) << ", " << escape(disk_label(*p))
      << ")</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

std::string legend_html() {
  std::string s = "<p class=\"legend\">Bottleneck colours: ";
  for (const char* b : kBottlenecks)
    s += "<span><i style=\"background:" + bottleneck_color(b) + "\"></i>" + b + "</span> ";
  return s + "</p>\n";
}

std::string title(const CapacityReport& r) {
  return r.model + ": " + std::to_string(r.workload.requests) + " requests of " +
         std::to_string(r.workload.prompt_len) + " prompt + " + std::to_string(r.workload.gen_len) +
         " generated tokens" +
         (r.scale.gpus() > 1 ? " on " + std::to_string(r.scale.machines) + " machine" +
                                   (r.scale.machines > 1 ? "s" : "") + " x " +
                                   std::to_string(r.scale.gpus_per_machine) + " GPUs"
                             : std::string());
}

}  // namespace

std::string capacity_markdown(const CapacityReport& r) {
  const Bests b = bests(r);
  std::ostringstream s;
  s << "# Capacity plan: " << title(r) << "\n\n";
  s << "Throughput (generated tokens of the whole job over its time) and job time are strata's planner "
       "predictions for the best policy on each machine (GPU x host DRAM x disk); a disk marked unused is "
       "one the best plan leaves alone. Costs: " << (r.prices_source.empty() ? "no prices given" : r.prices_source) << "\n\n";
  if (r.scale.gpus() > 1)
    s << "Scale: " << r.scale.machines << " machines x " << r.scale.gpus_per_machine << " GPUs, one engine per GPU on "
      << "its shard of the requests; each engine plans with 1/" << r.scale.gpus_per_machine << " of its machine's "
      << "DRAM and disk (capacity and bandwidth). Job time is one engine's; tokens/s is the whole job's; DRAM is per "
      << "machine; cost is all machines (GPUs, DRAM, one disk each) over the job time. Host DRAM bandwidth shared by "
      << "the GPUs is not modelled.\n\n";
  s << "## Best configuration per GPU\n\n";
  s << "| machine | GPU | DRAM | disk | tokens/s | job time | cost | bottleneck | policy (GPU batch x batches; W and KV gpu/cpu/disk %) |\n";
  s << "|---|---|---|---|---:|---:|---:|---|---|\n";
  for (const auto& m : b.machines) {
    const CapacityPoint* p = lookup(b.overall, m);
    if (!p || !p->feasible) {
      s << "| " << m << " | | | | - | does not fit | - | | |\n";
      continue;
    }
    s << "| " << m << " | " << p->gpu << " | " << gib(p->dram_bytes) << " | " << disk_label(*p) << " | "
      << rate(p->tokens_per_s) << " | " << duration(p->job_s) << " | " << money(p->cost, r.currency) << " | "
      << p->bottleneck << " | " << placement(p->policy) << " |\n";
  }
  s << "\n## Every configuration\n\n";
  s << "| machine | DRAM | disk | tokens/s | job time | cost | bottleneck |\n|---|---|---|---:|---:|---:|---|\n";
  for (const auto& p : r.points) {
    s << "| " << p.machine << " | " << gib(p.dram_bytes) << " | " << disk_label(p) << " | ";
    if (p.feasible)
      s << rate(p.tokens_per_s) << " | " << duration(p.job_s) << " | " << money(p.cost, r.currency) << " | "
        << p.bottleneck << " |\n";
    else
      s << "- | - | - | does not fit: " << p.reason.substr(0, p.reason.find(':')) << " |\n";
  }
  return s.str();
}

std::string capacity_html(const CapacityReport& r) {
  const Bests b = bests(r);
  std::ostringstream s;
  s << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>strata capacity plan: "
    << escape(r.model) << "</title>\n<style>\n"
       "body{font-family:sans-serif;margin:24px;color:#222;max-width:1000px}\n"
       "h1{font-size:22px}h2{font-size:17px;margin-top:28px}\n"
       "table{border-collapse:collapse;font-size:12px;margin:8px 0}\n"
       "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}td.n{text-align:right}\n"
       "th{background:#f3f3f3}.legend span{margin-right:12px;white-space:nowrap}\n"
       ".legend i{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:middle}\n"
       "td.b{color:#fff}.note{color:#555;font-size:13px}\n"
       "</style></head><body>\n";
  s << "<h1>Capacity plan: " << escape(title(r)) << "</h1>\n";
  s << "<p class=\"note\">Predictions of strata's planner for the best policy on each configuration (GPU x host "
       "DRAM x disk). Costs: " << escape(r.prices_source.empty() ? "no prices given" : r.prices_source) << "</p>\n";
  s << legend_html();
  s << throughput_chart(r, b);
  s << "<h2>Time and cost to finish the job (best configuration per GPU)</h2>\n";
  s << bar_chart("Time to finish the job", b, false, r.currency);
  s << bar_chart("Cost of the job", b, true, r.currency);
  s << "<h2>Bottleneck of each point (best disk per GPU and DRAM size)</h2>\n<table><tr><th>machine</th>";
  for (uint64_t d : b.drams) s << "<th>" << gib(d) << "</th>";
  s << "</tr>\n";
  for (const auto& m : b.machines) {
    s << "<tr><th>" << escape(m) << "</th>";
    for (uint64_t d : b.drams) {
      const CapacityPoint* p = lookup(b.by_dram, std::pair{m, d});
      if (!p || !p->feasible) {
        s << "<td>does not fit</td>";
        continue;
      }
      s << "<td class=\"b\" style=\"background:" << bottleneck_color(p->bottleneck) << "\">" << p->bottleneck
        << "<br>" << rate(p->tokens_per_s) << " tok/s, " << escape(disk_label(*p)) << "</td>";
    }
    s << "</tr>\n";
  }
  s << "</table>\n<h2>Every configuration</h2>\n<table><tr><th>machine</th><th>DRAM</th><th>disk</th>"
       "<th>tokens/s</th><th>job time</th><th>cost</th><th>bottleneck</th><th>policy</th></tr>\n";
  for (const auto& p : r.points) {
    s << "<tr><td>" << escape(p.machine) << "</td><td class=\"n\">" << gib(p.dram_bytes) << "</td><td>"
      << escape(disk_label(p)) << "</td>";
    if (p.feasible)
      s << "<td class=\"n\">" << rate(p.tokens_per_s) << "</td><td class=\"n\">" << duration(p.job_s)
        << "</td><td class=\"n\">" << money(p.cost, r.currency) << "</td><td>" << p.bottleneck << "</td><td>"
        << escape(placement(p.policy)) << "</td></tr>\n";
    else
      s << "<td colspan=\"5\">does not fit: " << escape(p.reason) << "</td></tr>\n";
  }
  s << "</table>\n</body></html>\n";
  return s.str();
}

}  // namespace strata::planner
