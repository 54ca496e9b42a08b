# CXX_FLAGS: the build's own flags (a sanitizer build's consumer needs them).
# Installs the built tree into a scratch prefix, then builds and runs an
# outside project against it twice: with find_package(tutti) and with
# pkg-config. Called by ctest (see tests/CMakeLists.txt).
file(REMOVE_RECURSE "${WORK_DIR}")
set(PREFIX "${WORK_DIR}/prefix")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${PREFIX}")

# CMake package.
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/install/consumer" -B "${WORK_DIR}/cmake-build"
    -G "${GENERATOR}" "-DCMAKE_PREFIX_PATH=${PREFIX}" "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}")
run(${CMAKE_COMMAND} --build "${WORK_DIR}/cmake-build")
run("${WORK_DIR}/cmake-build/consumer")

# pkg-config.
find_program(PKG_CONFIG pkg-config REQUIRED)
set(ENV{PKG_CONFIG_PATH} "${PREFIX}/${LIBDIR}/pkgconfig")
execute_process(COMMAND ${PKG_CONFIG} --cflags --libs tutti OUTPUT_VARIABLE flags
                RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not know tutti")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
# A sanitizer build's library needs the sanitizer runtime in the program too.
separate_arguments(extra UNIX_COMMAND "${CXX_FLAGS}")
find_program(CXX NAMES c++ g++ REQUIRED)
run(${CXX} ${extra} "${SOURCE_DIR}/tests/install/consumer/main.cpp" ${flags} -o "${WORK_DIR}/pc-consumer")
run("${WORK_DIR}/pc-consumer")
