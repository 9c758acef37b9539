/* tests/daemon/fifo-endpoint.h: struct test_endpoints owns the fifos and copier threads that put a daemon test's stdout endpoints on the relay's splice path; borrows nothing. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct relay;
struct test_endpoints;

/* Under VSOCKMUX_TEST_FIFO_ENDPOINTS=1 (the *-splice suites) every endpoint a test names becomes a
 * fifo a copier thread drains into the file the test reads: a fifo takes splices, the regular
 * O_APPEND files of the plain suites never do. Otherwise the file itself is the endpoint. */
struct test_endpoints *test_endpoints_new(void);
/* Joins every copier, closes and removes its fifo. */
struct test_endpoints *test_endpoints_free(struct test_endpoints *e);
bool test_endpoints_fifo(const struct test_endpoints *e);

/* The path to give the daemon for output that the test reads at `file` (NULL stays NULL). The
 * returned string lives as long as e. */
const char *test_endpoint(struct test_endpoints *e, const char *file);
/* Returns once every byte written to any fifo so far is in its file. */
void test_endpoints_settle(struct test_endpoints *e);
/* In the fifo variant, fails the test unless the relay moved some bytes by splice(2). */
void test_endpoints_assert_spliced(const struct test_endpoints *e, struct relay *r);
