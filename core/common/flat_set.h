// A hash set stored in one array (open addressing, linear probing,
// backward-shift deletion, no tombstones): one slot of sizeof(T) per element
// at a load of 2/5 to 4/5, where a node-based std::unordered_map spends a
// heap node (key, value, next pointer, allocator header) plus a bucket
// pointer per element. Made for tables of millions of small entries (the
// vfs's inodes).
//
// T is default-constructible, and its default value is the empty slot and is
// never inserted: `bool(slot)` tells whether a slot is used (a smart pointer,
// or a struct with an explicit operator bool). KeyOf(slot) gives the key,
// Hash hashes it. Pointers to elements are invalidated by insert and erase.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace originfs {

template <typename T, typename KeyOf, typename Hash>
class FlatSet {
 public:
  using Key = std::decay_t<decltype(KeyOf{}(std::declval<const T&>()))>;

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Bytes of the slot array (what the set costs besides its elements' own
  // heap memory).
  std::size_t memory_bytes() const { return slots_.capacity() * sizeof(T); }

  T* find(const Key& k) {
    if (slots_.empty()) return nullptr;
    for (std::size_t i = Home(k);; i = Next(i)) {
      T& s = slots_[i];
      if (!s) return nullptr;
      if (KeyOf{}(s) == k) return &s;
    }
  }
  const T* find(const Key& k) const { return const_cast<FlatSet*>(this)->find(k); }
  bool contains(const Key& k) const { return find(k) != nullptr; }

  // Inserts v unless its key is present; returns the element with that key
  // and whether v was inserted.
  std::pair<T*, bool> insert(T v) {
    if ((size_ + 1) * 5 > slots_.size() * 4) Grow();
    const Key k = KeyOf{}(v);
    for (std::size_t i = Home(k);; i = Next(i)) {
      T& s = slots_[i];
      if (!s) {
        s = std::move(v);
        ++size_;
        return {&s, true};
      }
      if (KeyOf{}(s) == k) return {&s, false};
    }
  }

  // Removes the element with key k, returning it (empty if none).
  T take(const Key& k) {
    T* s = find(k);
    if (!s) return T{};
    T out = std::move(*s);
    *s = T{};
    --size_;
    // Backward shift: later elements of the probe run move into the hole
    // unless their home lies cyclically in (hole, their slot].
    std::size_t hole = static_cast<std::size_t>(s - slots_.data());
    for (std::size_t i = Next(hole); slots_[i]; i = Next(i)) {
      std::size_t home = Home(KeyOf{}(slots_[i]));
      bool stays = hole < i ? (hole < home && home <= i) : (hole < home || home <= i);
      if (stays) continue;
      slots_[hole] = std::move(slots_[i]);
      slots_[i] = T{};
      hole = i;
    }
    return out;
  }
  bool erase(const Key& k) { return static_cast<bool>(take(k)); }

  template <typename F>
  void for_each(F&& f) {
    for (T& s : slots_)
      if (s) f(s);
  }

 private:
  std::size_t Home(const Key& k) const {
    // Fibonacci hashing spreads hashes that differ only in high or low bits.
    uint64_t h = static_cast<uint64_t>(Hash{}(k)) * 0x9e3779b97f4a7c15ull;
    return static_cast<std::size_t>(h >> shift_);
  }
  std::size_t Next(std::size_t i) const { return (i + 1) & (slots_.size() - 1); }

  void Grow() {
    std::vector<T> old;
    old.swap(slots_);
    std::size_t n = old.empty() ? 16 : old.size() * 2;
    slots_.resize(n);
    shift_ = 64;
    for (std::size_t c = n; c > 1; c >>= 1) --shift_;
    size_ = 0;
    for (T& s : old)
      if (s) insert(std::move(s));
  }

  std::vector<T> slots_;
  std::size_t size_ = 0;
  int shift_ = 64;
};

}  // namespace originfs
