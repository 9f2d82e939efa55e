/* The control link's HMAC challenge (include/peak/ctlauth.h), on nettle. */
#include "peak/ctlauth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/hmac.h>
#include <nettle/memops.h>

static const char domain[] = "peak-ctl-hello-v1";           /* hashed with its NUL */
static const char domain_welcome[] = "peak-ctl-welcome-v1"; /* hashed with its NUL */

int ctlauth_key_load(const char *path, struct ctlauth_key *key, char *err, size_t errlen)
{
	uint8_t buf[CTLAUTH_KEY_MAX + 3];
	struct stat st;
	ssize_t n = 0, k;
	int ret, fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	memset(key, 0, sizeof(*key));
	if (fd == -1) {
		ret = -errno;
		snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) == -1) {
		ret = -errno;
		snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		snprintf(err, errlen, "key file %s: not a regular file", path);
		goto out;
	}
	if (st.st_mode & (S_IRWXO | S_IWGRP)) {
		ret = -EPERM;
		snprintf(err, errlen,
		         "key file %s: mode %04o lets others read or change it (chmod 600 it)",
		         path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	while ((size_t)n < sizeof(buf) && (k = read(fd, buf + n, sizeof(buf) - (size_t)n)) != 0) {
		if (k == -1 && errno == EINTR)
			continue;
		if (k == -1) {
			ret = -errno;
			snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
			goto out;
		}
		n += k;
	}
	if (n && buf[n - 1] == '\n')
		n--;
	if (n && buf[n - 1] == '\r')
		n--;
	if (n < CTLAUTH_KEY_MIN || n > CTLAUTH_KEY_MAX) {
		ret = -EINVAL;
		snprintf(err, errlen, "key file %s: the key must have %d to %d bytes", path,
		         CTLAUTH_KEY_MIN, CTLAUTH_KEY_MAX);
		goto out;
	}
	memcpy(key->k, buf, (size_t)n);
	key->len = (size_t)n;
	ret = 0;
out:
	explicit_bzero(buf, sizeof(buf));
	if (fd != -1)
		close(fd);
	return ret;
}

void ctlauth_key_wipe(struct ctlauth_key *key)
{
	explicit_bzero(key, sizeof(*key));
}

int ctlauth_nonce(uint8_t nonce[static CTL_NONCE_LEN])
{
	size_t got = 0;
	while (got < CTL_NONCE_LEN) {
		ssize_t k = getrandom(nonce + got, CTL_NONCE_LEN - got, 0);
		if (k == -1 && errno == EINTR)
			continue;
		if (k == -1)
			return -errno;
		got += (size_t)k;
	}
	return 0;
}

void ctlauth_tag(const struct ctlauth_key *key, const uint8_t nonce[static CTL_NONCE_LEN],
                 const char *node, uint8_t tag[static CTL_TAG_LEN])
{
	struct hmac_sha256_ctx h;
	hmac_sha256_set_key(&h, key->len, key->k);
	hmac_sha256_update(&h, sizeof(domain), (const uint8_t *)domain);
	hmac_sha256_update(&h, CTL_NONCE_LEN, nonce);
	hmac_sha256_update(&h, strnlen(node, CTL_ID_MAX), (const uint8_t *)node);
	hmac_sha256_digest(&h, CTL_TAG_LEN, tag);
	explicit_bzero(&h, sizeof(h));
}

bool ctlauth_check(const struct ctlauth_key *key, const uint8_t nonce[static CTL_NONCE_LEN],
                   const char *node, const uint8_t tag[static CTL_TAG_LEN])
{
	uint8_t want[CTL_TAG_LEN];
	ctlauth_tag(key, nonce, node, want);
	bool ok = memeql_sec(want, tag, CTL_TAG_LEN);
	explicit_bzero(want, sizeof(want));
	return ok;
}

void ctlauth_proof(const struct ctlauth_key *key, const uint8_t anonce[static CTL_NONCE_LEN],
                   const uint8_t cnonce[static CTL_NONCE_LEN], const char *node,
                   uint8_t proof[static CTL_TAG_LEN])
{
	struct hmac_sha256_ctx h;
	hmac_sha256_set_key(&h, key->len, key->k);
	hmac_sha256_update(&h, sizeof(domain_welcome), (const uint8_t *)domain_welcome);
	hmac_sha256_update(&h, CTL_NONCE_LEN, anonce);
	hmac_sha256_update(&h, CTL_NONCE_LEN, cnonce);
	hmac_sha256_update(&h, strnlen(node, CTL_ID_MAX), (const uint8_t *)node);
	hmac_sha256_digest(&h, CTL_TAG_LEN, proof);
	explicit_bzero(&h, sizeof(h));
}

bool ctlauth_proof_check(const struct ctlauth_key *key, const uint8_t anonce[static CTL_NONCE_LEN],
                         const uint8_t cnonce[static CTL_NONCE_LEN], const char *node,
                         const uint8_t proof[static CTL_TAG_LEN])
{
	uint8_t want[CTL_TAG_LEN];
	ctlauth_proof(key, anonce, cnonce, node, want);
	bool ok = memeql_sec(want, proof, CTL_TAG_LEN);
	explicit_bzero(want, sizeof(want));
	return ok;
}
