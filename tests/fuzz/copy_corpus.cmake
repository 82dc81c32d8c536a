# cmake -DSRC=<seed dir> -DDST=<work dir> -P copy_corpus.cmake
# Recreates DST/corpus as a fresh copy of the seeds (fuzzing writes new inputs
# into the copy, never into the source tree).
if(NOT SRC OR NOT DST)
  message(FATAL_ERROR "usage: cmake -DSRC=dir -DDST=dir -P copy_corpus.cmake")
endif()
file(REMOVE_RECURSE ${DST}/corpus)
file(MAKE_DIRECTORY ${DST}/corpus)
file(GLOB seeds ${SRC}/*)
file(COPY ${seeds} DESTINATION ${DST}/corpus)
