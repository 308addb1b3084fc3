/* router._hmac: the hash filter's keyed HMAC-SHA256 (filters/privacy.py), on OpenSSL's SHA-256.
 *
 * HMAC(key, m) = SHA256(key ^ opad || SHA256(key ^ ipad || m)) (RFC 2104). The two keyed
 * states are hashed once (keyed()) and copied per value, as the Python twin in privacy.py does
 * with CPython's own SHA-256; here a copy is a struct assignment and each compression runs
 * OpenSSL's (SHA extensions or AVX2 where the CPU has them), ~10 times fewer instructions than
 * CPython's portable C. No cryptography is written here: the construction is the two lines
 * above, the hashing is libcrypto's, and tests check every output against Python's hmac.
 *
 * Built by setup.py as optional, apart from router._speedups: without OpenSSL's headers only
 * this module is missing, and the hash filter uses its Python twin (the same digests).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP, whose context copy
 * per value costs what this module exists to save; they remain part of its API. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/sha.h>

#define BLOCK 64

typedef struct {
    SHA256_CTX inner; /* after key ^ ipad */
    SHA256_CTX outer; /* after key ^ opad */
} Keyed;

static PyObject *
keyed(PyObject *Py_UNUSED(module), PyObject *key)
{
    Py_buffer view;
    if (PyObject_GetBuffer(key, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    unsigned char block[BLOCK] = {0}, pad[BLOCK];
    if (view.len > BLOCK)
        SHA256(view.buf, (size_t)view.len, block); /* a long key is hashed first (RFC 2104) */
    else
        memcpy(block, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    Keyed k;
    for (int i = 0; i < BLOCK; i++)
        pad[i] = block[i] ^ 0x36;
    SHA256_Init(&k.inner);
    SHA256_Update(&k.inner, pad, BLOCK);
    for (int i = 0; i < BLOCK; i++)
        pad[i] = block[i] ^ 0x5c;
    SHA256_Init(&k.outer);
    SHA256_Update(&k.outer, pad, BLOCK);
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(pad, sizeof pad);
    PyObject *state = PyBytes_FromStringAndSize((const char *)&k, sizeof k);
    OPENSSL_cleanse(&k, sizeof k);
    return state;
}

static PyObject *
hexdigest(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "hexdigest(keyed, message, length)");
        return NULL;
    }
    PyObject *state = args[0], *message = args[1];
    if (!PyBytes_CheckExact(state) || PyBytes_GET_SIZE(state) != (Py_ssize_t)sizeof(Keyed)) {
        PyErr_SetString(PyExc_TypeError, "keyed must be what keyed() returned");
        return NULL;
    }
    long length = PyLong_AsLong(args[2]);
    if (length == -1 && PyErr_Occurred())
        return NULL;
    if (length < 1 || length > 2 * SHA256_DIGEST_LENGTH) {
        PyErr_SetString(PyExc_ValueError, "length must be 1 to 64 hex digits");
        return NULL;
    }
    const char *text;
    Py_ssize_t size;
    if (PyUnicode_Check(message)) {
        text = PyUnicode_AsUTF8AndSize(message, &size); /* raises on a lone surrogate */
        if (text == NULL)
            return NULL;
    }
    else if (PyBytes_Check(message)) {
        text = PyBytes_AS_STRING(message);
        size = PyBytes_GET_SIZE(message);
    }
    else {
        PyErr_SetString(PyExc_TypeError, "message must be str or bytes");
        return NULL;
    }
    const Keyed *k = (const Keyed *)PyBytes_AS_STRING(state);
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx = k->inner;
    SHA256_Update(&ctx, text, (size_t)size);
    SHA256_Final(digest, &ctx);
    ctx = k->outer;
    SHA256_Update(&ctx, digest, sizeof digest);
    SHA256_Final(digest, &ctx);
    static const char hex_digits[] = "0123456789abcdef";
    char hex[2 * SHA256_DIGEST_LENGTH];
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        hex[2 * i] = hex_digits[digest[i] >> 4];
        hex[2 * i + 1] = hex_digits[digest[i] & 15];
    }
    return PyUnicode_FromStringAndSize(hex, length);
}

static PyMethodDef methods[] = {
    {"keyed", keyed, METH_O,
     "The HMAC-SHA256 states of a key (bytes), for hexdigest(); they hold key material."},
    {"hexdigest", (PyCFunction)(void (*)(void))hexdigest, METH_FASTCALL,
     "HMAC-SHA256 of a message (str as UTF-8, or bytes) as hex, its first `length` digits."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "router._hmac",
    .m_doc = "The hash filter's HMAC-SHA256 on OpenSSL's SHA-256; privacy.py has a Python twin.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__hmac(void)
{
    return PyModule_Create(&module);
}
