// gemma4: one binary, many subcommands (run, chat, serve, bench, convert,
// quantize, info, tokenize, ...). Subcommands register themselves from their
// own files; this file only wires them and turns errors into exit codes.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"gemma4: run Google's Gemma 4 models locally"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "gemma4 0.1.0");
  g4::cli::add_info_command(app);
  g4::cli::add_tokenize_commands(app);
  g4::cli::add_make_test_model_command(app);
  g4::cli::add_eval_command(app);
  g4::cli::add_generation_commands(app);
  g4::cli::add_bench_command(app);
  g4::cli::add_convert_command(app);
  g4::cli::add_quantize_command(app);
  g4::cli::add_perplexity_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const g4::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
