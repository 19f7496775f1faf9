// Flight::ReportFailure: a failed download's error is told to one caller
// (an open or a read) before anyone starts a new attempt, so one open()
// after a broken body is one GET, not two (retries = 0 means no retry).
#include "core/mirror/flight.h"

#include <gtest/gtest.h>

namespace originfs {
namespace {

TEST(FlightTest, AFailureIsReportedOnce) {
  Flight f("k");
  EXPECT_FALSE(f.ReportFailure());  // still running: nothing to report
  f.Finish(Fail(EIO, "body broke off"));
  EXPECT_TRUE(f.ReportFailure());
  EXPECT_FALSE(f.ReportFailure());  // the next caller starts a new attempt
  EXPECT_FALSE(f.WaitDone().has_value());
}

TEST(FlightTest, ASuccessHasNothingToReport) {
  Flight f("k");
  f.Finish(FetchedObject{true, nullptr, 3, 1});
  EXPECT_FALSE(f.ReportFailure());
  EXPECT_TRUE(f.WaitDone().has_value());
}

}  // namespace
}  // namespace originfs
