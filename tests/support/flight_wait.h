// Bounded waits on a Flight: a mirror that never reports fails the test
// instead of hanging it.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>

#include "core/mirror/mirror.h"

namespace originfs::testing {

inline constexpr std::chrono::seconds kFlightTimeout{10};

inline Result<Resolution> AwaitHead(Flight& flight,
                                    std::chrono::milliseconds timeout = kFlightTimeout) {
  auto promise = std::make_shared<std::promise<Result<Resolution>>>();
  auto future = promise->get_future();
  flight.OnHead([promise](const Result<Resolution>& r) { promise->set_value(r); });
  if (future.wait_for(timeout) != std::future_status::ready) {
    ADD_FAILURE() << "no head for \"" << flight.key() << "\" within " << timeout.count() << " ms";
    return Fail(ETIMEDOUT, "test timeout");
  }
  return future.get();
}

inline Result<FetchedObject> AwaitDone(Flight& flight,
                                       std::chrono::milliseconds timeout = kFlightTimeout) {
  auto promise = std::make_shared<std::promise<Result<FetchedObject>>>();
  auto future = promise->get_future();
  flight.OnDone([promise](const Result<FetchedObject>& r) { promise->set_value(r); });
  if (future.wait_for(timeout) != std::future_status::ready) {
    ADD_FAILURE() << "flight for \"" << flight.key() << "\" not done within " << timeout.count()
                  << " ms";
    return Fail(ETIMEDOUT, "test timeout");
  }
  return future.get();
}

}  // namespace originfs::testing
