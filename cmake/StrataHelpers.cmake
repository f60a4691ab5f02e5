# strata_library(NAME DEPS dep...): a static library strata_<NAME> from src/<NAME>/*.cc,
# with src/ on the include path.
function(strata_library name)
  cmake_parse_arguments(ARG "" "" "DEPS;PRIVATE_DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  if(NOT srcs)
    message(WARNING "strata: src/${name} has no sources yet")
    return()
  endif()
  add_library(strata_${name} STATIC ${srcs})
  target_include_directories(strata_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(strata_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# strata_test(NAME DEPS dep...): one gtest binary strata_<NAME>_tests from tests/<NAME>/*_test.cc.
function(strata_test name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
  if(NOT srcs)
    return()
  endif()
  add_executable(strata_${name}_tests ${srcs})
  target_link_libraries(strata_${name}_tests PRIVATE ${ARG_DEPS} strata_testing GTest::gtest GTest::gtest_main)
  gtest_discover_tests(strata_${name}_tests DISCOVERY_TIMEOUT 60
                       PROPERTIES ENVIRONMENT "STRATA_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data")
endfunction()
