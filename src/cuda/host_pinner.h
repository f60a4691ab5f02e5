// Pins host memory for a CUDA device: the storage::HostPinner that makes a HostArena's block
// page-locked and registered with the driver (cudaHostRegister, portable and mapped), so copies
// between it and the GPU run as DMA at the link's pinned rate. The pinner owns nothing; the
// arena that calls pin() calls unpin() on the same range before unmapping it. pin()/unpin() are
// thread safe and leave the calling thread's current CUDA device as they found it. Units: bytes.
//
// A GPU run creates its host arenas like this (the pinner must outlive the arena):
//   auto pinner = cuda::make_cuda_host_pinner(device);
//   storage::HostArenaOptions o;
//   o.bytes = cpu_tier_bytes;
//   o.numa_node = storage::preferred_numa_node(topology);  // queried with the GPU's bus id
//   o.pinner = pinner.get();
//   auto arena = storage::HostArena::create(o, log);  // memory_kind() == kPinned once pinned
// In a build without CUDA the pinner's pin() fails with kUnsupported, and the arena warns and
// stays pageable.
#pragma once

#include <memory>

#include "storage/host_arena.h"

namespace strata::cuda {

// A pinner for CUDA device `device` (reporting MemoryKind::kPinned). pin() fails with a Status
// naming the size, the device and the CUDA error: kOutOfMemory when the driver cannot lock that
// much, kInvalidArgument for a range already registered or an empty one, kUnsupported without a
// usable device (or without CUDA in this build), kInternal otherwise.
std::unique_ptr<storage::HostPinner> make_cuda_host_pinner(int device);

}  // namespace strata::cuda
