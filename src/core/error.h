// Errors: every failure a user can cause (bad file, bad flag, bad request) is a
// g4::Error with a message that names the thing at fault. Never abort on input.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace g4 {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// fail("tensor ", name, " has ", n, " dims") throws g4::Error with the parts joined.
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  throw Error(os.str());
}

}  // namespace g4
