// assay's C++ test harness: included first in the program's translation unit.
// The runner builds: this header, `#define main assay_program_main`, the program, then the
// tests (their #include lines hoisted above the program) with `assert(...)` redefined to report
// each assertion's line, and a `main` that reads the nonce from stdin and runs the tests' main.
// Records go to a private copy of stdout; the program's own stdout is redirected to stderr.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <set>
#include <type_traits>
#include <unistd.h>
#include <fcntl.h>

namespace assay {
// Plain arrays: they hold their value before any dynamic initialization runs.
static char nonce[128];
static int out_fd = -1;
static std::set<int> failed_lines, seen_lines;

static void emit(const std::string& json) {
    std::string line = std::string("\n@@assay:") + nonce + " " + json + "\n";
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
        ssize_t n = ::write(out_fd, p, left);
        if (n <= 0) return;
        p += n;
        left -= (size_t)n;
    }
}

static std::string quote(const std::string& s) {
    std::string q = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') { q += '\\'; q += (char)c; }
        else if (c < 0x20 || c >= 0x7f) { char buf[8]; snprintf(buf, sizeof buf, "\\u%04x", c); q += buf; }
        else q += (char)c;
    }
    return q + "\"";
}

// Runs before the program's static initializers: reads the nonce, closes stdin, moves stdout.
__attribute__((constructor(101))) static void start() {
    size_t used = 0;
    ssize_t n;
    while (used < sizeof nonce - 1 && (n = ::read(0, nonce + used, sizeof nonce - 1 - used)) > 0) used += (size_t)n;
    while (used > 0 && (nonce[used - 1] == '\n' || nonce[used - 1] == ' ')) nonce[--used] = 0;
    int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, 0);
    ::close(null_fd);
    out_fd = ::dup(1);
    ::dup2(2, 1);
}

static void check(bool ok, int line, const char* text) {
    if (failed_lines.count(line)) return;
    if (!ok) {
        failed_lines.insert(line);
        emit("{\"t\": \"test\", \"line\": " + std::to_string(line) + ", \"ok\": false, \"msg\": " +
             quote(std::string("assertion failed: ") + text) + "}");
    } else if (!seen_lines.count(line)) {
        seen_lines.insert(line);
        emit("{\"t\": \"test\", \"line\": " + std::to_string(line) + ", \"ok\": true, \"msg\": \"\"}");
    }
}

template <typename F>
static int run(F tests_main) {
    try {
        if constexpr (std::is_invocable_v<F>) {
            tests_main();
        } else {
            char name[] = "tests";
            char* argv[] = {name, nullptr};
            tests_main(1, argv);
        }
    } catch (const std::exception& e) {
        emit("{\"t\": \"fatal\", \"msg\": " + quote(std::string("uncaught exception: ") + e.what()) + "}");
    } catch (...) {
        emit("{\"t\": \"fatal\", \"msg\": \"uncaught exception\"}");
    }
    emit("{\"t\": \"done\"}");
    ::_exit(0);  // skip the program's static destructors and atexit handlers
}
}  // namespace assay
