// Each subcommand of `gemma4` lives in its own cmd_*.cpp and registers itself
// on the top-level CLI11 app here. A handler throws g4::Error for user errors;
// main() prints it as "error: ..." and exits 1.
#pragma once
#include <CLI/CLI.hpp>

namespace g4::cli {

void add_info_command(CLI::App& app);             // cmd_info.cpp
void add_tokenize_commands(CLI::App& app);        // cmd_tokenize.cpp (tokenize, detokenize)
void add_make_test_model_command(CLI::App& app);  // cmd_make_test_model.cpp
void add_eval_command(CLI::App& app);             // cmd_eval.cpp
void add_generation_commands(CLI::App& app);      // cmd_generate.cpp (run, chat)
void add_bench_command(CLI::App& app);            // cmd_bench.cpp
void add_convert_command(CLI::App& app);          // cmd_convert.cpp
void add_quantize_command(CLI::App& app);         // cmd_quantize.cpp
void add_perplexity_command(CLI::App& app);       // cmd_perplexity.cpp

}  // namespace g4::cli
