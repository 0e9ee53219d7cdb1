/*
 * test_capture — common/capture: records round-trip (binary bodies, empty
 * bodies, unknown keys ignored); rotation by size gives several files whose
 * records, read in sorted file order, are all there in order; a record cut
 * short at the end of a file ends it quietly; a hostile length or element
 * count is an error without a huge allocation (ASan would abort on one);
 * garbage, a non-map and maps missing fields are errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture.h"

struct fixture {
	char dir[64];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	strcpy(fx->dir, "/tmp/baton-test-capture-XXXXXX");
	if (!mkdtemp(fx->dir)) {
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

/* Capture directories are flat, except the one nested test below. */
static void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		struct stat st;
		if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
			rm_tree(p);
		else
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	rm_tree(fx->dir);
	free(fx);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Paths of the *.bcap files in dir, sorted; *n gets the count. */
static char **list_files(const char *dir, size_t *n)
{
	char **out = NULL;
	*n = 0;
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l < 5 || strcmp(e->d_name + l - 5, ".bcap") != 0)
			continue;
		out = realloc(out, (*n + 1) * sizeof(*out));
		assert_non_null(out);
		char *p = malloc(strlen(dir) + l + 2);
		assert_non_null(p);
		sprintf(p, "%s/%s", dir, e->d_name);
		out[(*n)++] = p;
	}
	closedir(d);
	if (*n)
		qsort(out, *n, sizeof(*out), cmp_str);
	return out;
}

static void free_list(char **l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

/* Body i: varied sizes, and bytes a string would not survive (NUL, 0xff). */
static size_t make_body(unsigned i, char *buf, size_t cap)
{
	size_t n = (size_t)snprintf(buf, cap, "MessageSid=SM%032u&Body=hello+%u", i, i);
	size_t extra = i % 97;
	for (size_t k = 0; k < extra && n + 1 < cap; k++)
		buf[n++] = (char)(k % 3 == 0 ? '\0' : (k % 3 == 1 ? (char)0xff : 'x'));
	return n;
}

static const char *path_of(unsigned i)
{
	return i % 5 == 0 ? "/admin/handback" : "/twilio/messages";
}

static void expect_record(struct capture_reader *r, unsigned i)
{
	char want[512];
	struct capture_record rec;
	size_t n = make_body(i, want, sizeof(want));
	int rc = capture_read(r, &rec);
	if (rc != 1)
		fail_msg("record %u: capture_read returned %d", i, rc);
	assert_int_equal(rec.t, 1700000000000ull + i);
	assert_string_equal(rec.path, path_of(i));
	assert_int_equal(rec.len, n);
	assert_memory_equal(rec.body, want, n);
	assert_int_equal(rec.body[n], '\0');
	capture_record_release(&rec);
	assert_null(rec.path);
	assert_null(rec.body);
}

static void write_records(const char *dir, size_t max_bytes, unsigned count)
{
	char body[512];
	struct capture_writer *w = capture_open(dir, max_bytes);
	assert_non_null(w);
	for (unsigned i = 0; i < count; i++) {
		size_t n = make_body(i, body, sizeof(body));
		assert_int_equal(capture_append(w, 1700000000000ull + i, path_of(i), body, n), 0);
	}
	capture_close(&w);
	assert_null(w);
}

static void test_roundtrip(void **state)
{
	struct fixture *fx = *state;
	size_t n;
	write_records(fx->dir, 64u * 1024 * 1024, 2000);
	char **files = list_files(fx->dir, &n);
	assert_int_equal(n, 1);
	struct capture_reader *r = capture_reader_open(files[0]);
	assert_non_null(r);
	for (unsigned i = 0; i < 2000; i++)
		expect_record(r, i);
	struct capture_record rec;
	assert_int_equal(capture_read(r, &rec), 0);
	assert_int_equal(capture_read(r, &rec), 0); /* the end stays the end */
	capture_reader_close(&r);
	assert_null(r);
	free_list(files, n);
}

static void test_empty_body_and_nested_dir(void **state)
{
	struct fixture *fx = *state;
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/a/b", fx->dir);
	struct capture_writer *w = capture_open(dir, 1024);
	assert_non_null(w);
	assert_int_equal(capture_append(w, 42, "/twilio/status", NULL, 0), 0);
	capture_close(&w);
	size_t n;
	char **files = list_files(dir, &n);
	assert_int_equal(n, 1);
	struct stat st;
	assert_int_equal(stat(files[0], &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600); /* customers' messages: owner only */
	struct capture_reader *r = capture_reader_open(files[0]);
	struct capture_record rec;
	assert_int_equal(capture_read(r, &rec), 1);
	assert_int_equal(rec.t, 42);
	assert_string_equal(rec.path, "/twilio/status");
	assert_int_equal(rec.len, 0);
	assert_string_equal(rec.body, "");
	capture_record_release(&rec);
	capture_reader_close(&r);
	free_list(files, n);
}

static void test_no_file_without_records(void **state)
{
	struct fixture *fx = *state;
	struct capture_writer *w = capture_open(fx->dir, 1024);
	assert_non_null(w);
	capture_close(&w);
	size_t n;
	char **files = list_files(fx->dir, &n);
	assert_int_equal(n, 0);
	free_list(files, n);
}

static void test_open_errors(void **state)
{
	struct fixture *fx = *state;
	char file[128];
	snprintf(file, sizeof(file), "%s/plain", fx->dir);
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	assert_null(capture_open(file, 1024));          /* a file, not a directory */
	snprintf(file, sizeof(file), "%s/plain/sub", fx->dir);
	assert_null(capture_open(file, 1024));          /* under a file */
	assert_null(capture_open("", 1024));
	assert_null(capture_reader_open("/nonexistent-baton-capture.bcap"));
}

static void test_rotation_keeps_everything_in_order(void **state)
{
	struct fixture *fx = *state;
	size_t n;
	write_records(fx->dir, 8 * 1024, 3000);
	char **files = list_files(fx->dir, &n);
	assert_true(n >= 5);
	unsigned next = 0;
	for (size_t k = 0; k < n; k++) {
		struct stat st;
		assert_int_equal(stat(files[k], &st), 0);
		/* A file is closed at the first record that reaches the limit. */
		assert_true(st.st_size < 8 * 1024 + 1024);
		struct capture_reader *r = capture_reader_open(files[k]);
		assert_non_null(r);
		struct capture_record rec;
		int rc;
		while ((rc = capture_read(r, &rec)) == 1) {
			assert_int_equal(rec.t, 1700000000000ull + next);
			capture_record_release(&rec);
			next++;
		}
		assert_int_equal(rc, 0);
		capture_reader_close(&r);
	}
	assert_int_equal(next, 3000);
	/* Contents, not just times, in one more pass over the first file. */
	struct capture_reader *r = capture_reader_open(files[0]);
	expect_record(r, 0);
	expect_record(r, 1);
	capture_reader_close(&r);
	free_list(files, n);
}

/* Cuts `cut` bytes off the end of the single capture file in dir; returns its path. */
static char *truncate_by(const char *dir, off_t cut)
{
	size_t n;
	char **files = list_files(dir, &n);
	assert_int_equal(n, 1);
	struct stat st;
	assert_int_equal(stat(files[0], &st), 0);
	assert_int_equal(truncate(files[0], st.st_size - cut), 0);
	char *p = strdup(files[0]);
	free_list(files, n);
	return p;
}

static void read_expecting(const char *file, unsigned complete)
{
	struct capture_reader *r = capture_reader_open(file);
	assert_non_null(r);
	for (unsigned i = 0; i < complete; i++)
		expect_record(r, i);
	struct capture_record rec;
	assert_int_equal(capture_read(r, &rec), 0);
	assert_null(rec.path);
	capture_reader_close(&r);
}

/* Size of a capture of the first `count` records: where record `count` starts. */
static off_t size_of_first(const char *parent, unsigned count)
{
	char dir[128];
	size_t n;
	struct stat st;
	snprintf(dir, sizeof(dir), "%s/first%u", parent, count);
	write_records(dir, 1u << 20, count);
	char **files = list_files(dir, &n);
	assert_int_equal(n, 1);
	assert_int_equal(stat(files[0], &st), 0);
	free_list(files, n);
	return st.st_size;
}

static void test_truncated_tail_ends_quietly(void **state)
{
	struct fixture *fx = *state;
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/ten", fx->dir);
	write_records(dir, 1u << 20, 10);
	char *file = truncate_by(dir, 7); /* inside the last record's body */
	read_expecting(file, 9);
	off_t end9 = size_of_first(fx->dir, 9);
	/* Shorter each time: truncate(2) would pad a longer size with zeros. */
	assert_int_equal(truncate(file, end9 + 4), 0); /* a header and nothing after it */
	read_expecting(file, 9);
	assert_int_equal(truncate(file, end9 + 2), 0); /* half of a length header */
	read_expecting(file, 9);
	assert_int_equal(truncate(file, end9), 0); /* exactly on a boundary: a clean end */
	read_expecting(file, 9);
	free(file);
}

/* Writes raw bytes as a capture file and returns its path (caller frees). */
static char *raw_file(const char *dir, const char *name, const void *data, size_t n)
{
	char *p = malloc(strlen(dir) + strlen(name) + 2);
	assert_non_null(p);
	sprintf(p, "%s/%s", dir, name);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	fclose(f);
	return p;
}

static void expect_damaged(const char *dir, const void *data, size_t n, int want_errno)
{
	char *p = raw_file(dir, "bad.bcap", data, n);
	struct capture_reader *r = capture_reader_open(p);
	assert_non_null(r);
	struct capture_record rec;
	errno = 0;
	assert_int_equal(capture_read(r, &rec), -1);
	assert_int_equal(errno, want_errno);
	assert_null(rec.path);
	assert_null(rec.body);
	/* A damaged file stays damaged: nothing after it is trusted. */
	assert_int_equal(capture_read(r, &rec), -1);
	capture_reader_close(&r);
	unlink(p);
	free(p);
}

static void test_huge_length_is_an_error(void **state)
{
	struct fixture *fx = *state;
	static const unsigned char huge[] = { 0xff, 0xff, 0xff, 0xff, 0x84 };
	expect_damaged(fx->dir, huge, sizeof(huge), EFBIG);
	/* One byte over the bound, and a zero length. */
	unsigned n = CAPTURE_RECORD_MAX + 1;
	unsigned char over[5] = { (unsigned char)(n >> 24), (unsigned char)(n >> 16),
				  (unsigned char)(n >> 8), (unsigned char)n, 0x80 };
	expect_damaged(fx->dir, over, sizeof(over), EFBIG);
	static const unsigned char zero[] = { 0, 0, 0, 0, 0x80 };
	expect_damaged(fx->dir, zero, sizeof(zero), EFBIG);
	/* A 5-byte map claiming 2^32-1 pairs: msgpack-c would allocate ~64 GiB
	 * for it up front (ASan aborts on that); the prescan refuses it. */
	static const unsigned char count[] = { 0, 0, 0, 5, 0xdf, 0xff, 0xff, 0xff, 0xff };
	expect_damaged(fx->dir, count, sizeof(count), EBADMSG);
	/* The same inside a value: {"x": array32 of 2^32-1}. */
	static const unsigned char nested[] = { 0, 0, 0, 8, 0x81, 0xa1, 'x', 0xdd,
						0xff, 0xff, 0xff, 0xff };
	expect_damaged(fx->dir, nested, sizeof(nested), EBADMSG);
}

static void test_garbage_is_an_error(void **state)
{
	struct fixture *fx = *state;
	static const unsigned char never[] = { 0, 0, 0, 3, 0xc1, 0xc1, 0xc1 };
	expect_damaged(fx->dir, never, sizeof(never), EBADMSG);
	static const unsigned char array[] = { 0, 0, 0, 3, 0x92, 0x01, 0x02 };
	expect_damaged(fx->dir, array, sizeof(array), EBADMSG);
	/* Two objects in one record: the length must cover exactly one. */
	static const unsigned char two[] = { 0, 0, 0, 2, 0x80, 0x80 };
	expect_damaged(fx->dir, two, sizeof(two), EBADMSG);
	/* {"v":1,"t":5,"p":"/x"}: no body. */
	static const unsigned char nobody[] = { 0, 0, 0, 13, 0x83, 0xa1, 'v', 0x01, 0xa1, 't', 0x05,
						0xa1, 'p', 0xa2, '/', 'x', 0xa0 };
	/* 13 bytes cover the map and leave one stray byte: still damaged. */
	expect_damaged(fx->dir, nobody, sizeof(nobody), EBADMSG);
	static const unsigned char nobody2[] = { 0, 0, 0, 12, 0x83, 0xa1, 'v', 0x01, 0xa1, 't', 0x05,
						 0xa1, 'p', 0xa2, '/', 'x' };
	expect_damaged(fx->dir, nobody2, sizeof(nobody2), EBADMSG);
	/* Version 2 is not ours. */
	static const unsigned char v2[] = { 0, 0, 0, 16, 0x84, 0xa1, 'v', 0x02, 0xa1, 't', 0x05,
					    0xa1, 'p', 0xa2, '/', 'x', 0xa1, 'b', 0xc4, 0x00 };
	expect_damaged(fx->dir, v2, sizeof(v2), EBADMSG);
	/* "t" as a string. */
	static const unsigned char ts[] = { 0, 0, 0, 18, 0x84, 0xa1, 'v', 0x01, 0xa1, 't', 0xa2, '5',
					    '5', 0xa1, 'p', 0xa2, '/', 'x', 0xa1, 'b', 0xc4, 0x00 };
	expect_damaged(fx->dir, ts, sizeof(ts), EBADMSG);
}

static void test_unknown_keys_ignored(void **state)
{
	struct fixture *fx = *state;
	/* {"v":1,"zz":[1,2],"t":7,"p":"/x","b":bin "hi"} */
	static const unsigned char rec5[] = { 0, 0, 0, 24, 0x85, 0xa1, 'v', 0x01, 0xa2, 'z', 'z',
					      0x92, 0x01, 0x02, 0xa1, 't', 0x07, 0xa1, 'p', 0xa2,
					      '/', 'x', 0xa1, 'b', 0xc4, 0x02, 'h', 'i' };
	char *p = raw_file(fx->dir, "extra.bcap", rec5, sizeof(rec5));
	struct capture_reader *r = capture_reader_open(p);
	struct capture_record rec;
	assert_int_equal(capture_read(r, &rec), 1);
	assert_int_equal(rec.t, 7);
	assert_string_equal(rec.path, "/x");
	assert_int_equal(rec.len, 2);
	assert_string_equal(rec.body, "hi");
	capture_record_release(&rec);
	assert_int_equal(capture_read(r, &rec), 0);
	capture_reader_close(&r);
	free(p);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_roundtrip),
		T(test_empty_body_and_nested_dir),
		T(test_no_file_without_records),
		T(test_open_errors),
		T(test_rotation_keeps_everything_in_order),
		T(test_truncated_tail_ends_quietly),
		T(test_huge_length_is_an_error),
		T(test_garbage_is_an_error),
		T(test_unknown_keys_ignored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
