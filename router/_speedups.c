/* router._speedups: four hot loops of the ingest path in C, each with a pure-Python twin that
 * answers the same (the twin runs where no C compiler was there at install time: setup.py builds
 * this module as optional; the suite tests both).
 *
 * - nothing_to_redact(data): redact's pre-check (filters/redact.py). Whether any string value
 *   of a decoded event could hold one of the built-in patterns (an e-mail address, a URL, an
 *   IPv4 or IPv6 address). The Python twin asks it of the event's JSON text with a dozen scans;
 *   this walks the decoded values once, without encoding them, and asks each string what
 *   `_NEEDS` asks (redact.py), more strictly for IPv4: three consecutive dots at most three
 *   characters apart, as a dotted quad's are. Anything it does not know (a subclass, a tuple,
 *   nesting deeper than MAX_DEPTH) is answered "maybe", and the filter walks.
 * - exceeds_depth(doc, max_depth): the ingest depth bound (ingest/shape.py).
 * - v0_events(docs, captured): the PostHog batch loop's common case (ingest/posthog.py), every
 *   event an SDK's plain one: a named, identified, timed event without person updates or
 *   properties to scrub; None as soon as one is not, and the Python loop decides them all.
 * - floor_utc_text(text, step): round_time's common case (filters/round_time.py), a timestamp
 *   written `YYYY-MM-DDTHH:MM:SSZ`, floored to `step` seconds (a divisor of a day); None for any
 *   other text, or a date or time that datetime.fromisoformat would refuse.
 *
 * Both only read: no Python code runs during a walk (values only, never a key's __eq__ or
 * __hash__; exact type checks), so the containers cannot change under it. v0_events' dict
 * lookups can run a key's __eq__ (a key that is not a str, with a str key's hash): it holds
 * what it reads by strong references and checks the batch's size before each event.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_DEPTH 64   /* nothing_to_redact's walk; deeper: "maybe" */
#define MAX_LIMIT 1000 /* exceeds_depth's largest max_depth (the C stack bounds the recursion) */
#define MAYBE 0
#define CLEAN 1

/* One string's characters, by width. A string is CLEAN when it holds no "@", no "://", no "::",
 * fewer than seven colons, and no three consecutive dots with at most three characters between
 * each (an octet is one to three digits, and each `\d` is one character). */
#define SCAN(TYPE)                                                                  \
    do {                                                                            \
        const TYPE *p = (const TYPE *)data;                                         \
        for (Py_ssize_t i = 0; i < n; i++) {                                        \
            Py_UCS4 c = p[i];                                                       \
            if (c > '@' || c < '.')                                                 \
                continue;                                                           \
            if (c == '@')                                                           \
                return MAYBE;                                                       \
            if (c == ':') {                                                         \
                if (++colons >= 7)                                                  \
                    return MAYBE;                                                   \
                if (i + 1 < n && p[i + 1] == ':')                                   \
                    return MAYBE;                                                   \
                if (i + 2 < n && p[i + 1] == '/' && p[i + 2] == '/')                \
                    return MAYBE;                                                   \
            }                                                                       \
            else if (c == '.') {                                                    \
                if (i - dot1 <= 4 && dot1 - dot2 <= 4)                              \
                    return MAYBE;                                                   \
                dot2 = dot1;                                                        \
                dot1 = i;                                                           \
            }                                                                       \
        }                                                                           \
    } while (0)

static int
string_is_clean(PyObject *s)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n < 3) /* the shortest match of any pattern, "::1", has three characters */
        return CLEAN;
    const void *data = PyUnicode_DATA(s);
    Py_ssize_t colons = 0, dot1 = -100, dot2 = -100; /* the last two dots' positions */
    switch (PyUnicode_KIND(s)) {
    case PyUnicode_1BYTE_KIND:
        SCAN(Py_UCS1);
        break;
    case PyUnicode_2BYTE_KIND:
        SCAN(Py_UCS2);
        break;
    default:
        SCAN(Py_UCS4);
        break;
    }
    return CLEAN;
}

static int value_is_clean(PyObject *value, int depth);

static int
container_is_clean(PyObject *node, int depth)
{
    if (depth > MAX_DEPTH)
        return MAYBE;
    if (PyDict_CheckExact(node)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(node, &pos, &key, &value))
            if (!value_is_clean(value, depth))
                return MAYBE;
        return CLEAN;
    }
    Py_ssize_t n = PyList_GET_SIZE(node);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!value_is_clean(PyList_GET_ITEM(node, i), depth))
            return MAYBE;
    return CLEAN;
}

static int
value_is_clean(PyObject *value, int depth)
{
    if (PyUnicode_CheckExact(value))
        return string_is_clean(value);
    if (PyDict_CheckExact(value) || PyList_CheckExact(value))
        return container_is_clean(value, depth + 1);
    if (value == Py_None || PyBool_Check(value) || PyLong_CheckExact(value) ||
        PyFloat_CheckExact(value))
        return CLEAN;
    return MAYBE;
}

static PyObject *
nothing_to_redact(PyObject *Py_UNUSED(module), PyObject *data)
{
    if (!PyDict_CheckExact(data) && !PyList_CheckExact(data))
        Py_RETURN_FALSE;
    if (container_is_clean(data, 0))
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* Whether dicts and lists nest deeper than `limit` levels below `node`, which is at level 1. */
static int
deeper_than(PyObject *node, int limit)
{
    if (limit <= 0)
        return 1;
    if (PyDict_CheckExact(node)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(node, &pos, &key, &value))
            if ((PyDict_CheckExact(value) || PyList_CheckExact(value)) &&
                deeper_than(value, limit - 1))
                return 1;
        return 0;
    }
    Py_ssize_t n = PyList_GET_SIZE(node);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(node, i);
        if ((PyDict_CheckExact(item) || PyList_CheckExact(item)) && deeper_than(item, limit - 1))
            return 1;
    }
    return 0;
}

static PyObject *
exceeds_depth(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "exceeds_depth(doc, max_depth)");
        return NULL;
    }
    PyObject *doc = args[0];
    long max_depth = PyLong_AsLong(args[1]);
    if (max_depth == -1 && PyErr_Occurred())
        return NULL;
    /* The C stack bounds the recursion: the limits allow at most a few hundred levels. */
    if (max_depth < 1 || max_depth > MAX_LIMIT) {
        PyErr_Format(PyExc_ValueError, "max_depth must be 1 to %d", MAX_LIMIT);
        return NULL;
    }
    if (!PyDict_CheckExact(doc) && !PyList_CheckExact(doc)) {
        PyErr_SetString(PyExc_TypeError, "doc must be a dict or a list");
        return NULL;
    }
    if (deeper_than(doc, (int)max_depth))
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

static int
two_digits(const Py_UCS1 *p, int *out)
{
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
        return 0;
    *out = (p[0] - '0') * 10 + (p[1] - '0');
    return 1;
}

static int
days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
        return 29;
    return days[month - 1];
}

static PyObject *
floor_utc_text(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "floor_utc_text(text, step)");
        return NULL;
    }
    PyObject *text = args[0];
    long step = PyLong_AsLong(args[1]);
    if (step == -1 && PyErr_Occurred())
        return NULL;
    if (step < 1 || 86400 % step != 0) {
        PyErr_SetString(PyExc_ValueError, "step must divide a day (86,400 seconds)");
        return NULL;
    }
    if (!PyUnicode_CheckExact(text) || PyUnicode_GET_LENGTH(text) != 20 ||
        !PyUnicode_IS_ASCII(text))
        Py_RETURN_NONE;
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(text);
    int century, year2, month, day, hour, minute, second;
    if (p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':' ||
        p[19] != 'Z' || !two_digits(p, &century) || !two_digits(p + 2, &year2) ||
        !two_digits(p + 5, &month) || !two_digits(p + 8, &day) ||
        !two_digits(p + 11, &hour) || !two_digits(p + 14, &minute) ||
        !two_digits(p + 17, &second))
        Py_RETURN_NONE;
    int year = century * 100 + year2;
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
        hour > 23 || minute > 59 || second > 59)
        Py_RETURN_NONE;
    long s = hour * 3600L + minute * 60L + second;
    s -= s % step;
    int parts[3] = {(int)(s / 3600), (int)(s / 60 % 60), (int)(s % 60)};
    char out[20];
    memcpy(out, p, 10); /* the date, as written */
    out[10] = 'T';
    for (int i = 0; i < 3; i++) { /* HH:MM:SS at 11, 14 and 17 */
        out[11 + 3 * i] = (char)('0' + parts[i] / 10);
        out[12 + 3 * i] = (char)('0' + parts[i] % 10);
        out[13 + 3 * i] = i < 2 ? ':' : 'Z';
    }
    return PyUnicode_FromStringAndSize(out, 20);
}

static PyObject *key_event, *key_properties, *key_distinct_id, *key_timestamp, *key_uuid;
static PyObject *key_token, *key_dollar_token, *key_ip, *key_set, *key_set_once;

/* Whether a str holds a character that str.strip() keeps. */
static int
has_text(PyObject *s)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i)))
            return 1;
    return 0;
}

/* 1 if `dict` (exact; str keys where JSON decoded it, but see get_ref) holds none of the keys;
 * 0 if it holds one; -1 on an error. */
static int
holds_none(PyObject *dict, PyObject *const *keys, int n)
{
    for (int i = 0; i < n; i++) {
        int found = PyDict_Contains(dict, keys[i]);
        if (found != 0)
            return found < 0 ? -1 : 0;
    }
    return 1;
}

/* dict[key] as a new reference; NULL when absent, or with an error set. Held at once: a later
 * lookup may run a key's __eq__ (a key that is not a str, with the same hash), which could
 * empty the dict and free a value that was only borrowed. */
static PyObject *
get_ref(PyObject *dict, PyObject *key)
{
    return Py_XNewRef(PyDict_GetItemWithError(dict, key));
}

/* One event as ingest/posthog.py's loop makes it, or NULL with no error set when it is not
 * the common case (NULL with an error set: out of memory, or a key's __eq__ raised). */
static PyObject *
v0_event(PyObject *raw, PyTypeObject *captured)
{
    if (!PyDict_CheckExact(raw))
        return NULL;
    PyObject *name = NULL, *properties = NULL, *distinct_id = NULL, *timestamp = NULL;
    PyObject *uuid = NULL, *own = NULL, *data = NULL, *event = NULL;
    name = get_ref(raw, key_event);
    if (name == NULL || !PyUnicode_CheckExact(name) || !has_text(name))
        goto done;
    properties = get_ref(raw, key_properties);
    if (PyErr_Occurred() || (properties != NULL && !PyDict_CheckExact(properties) &&
                             properties != Py_None))
        goto done;
    distinct_id = get_ref(raw, key_distinct_id);
    if (distinct_id == NULL || !PyUnicode_CheckExact(distinct_id) || !has_text(distinct_id))
        goto done;
    timestamp = get_ref(raw, key_timestamp);
    if (timestamp == NULL || !PyUnicode_CheckExact(timestamp))
        goto done;
    uuid = get_ref(raw, key_uuid);
    if (PyErr_Occurred())
        goto done;
    PyObject *updates[] = {key_set, key_set_once};
    PyObject *scrubbed[] = {key_token, key_dollar_token, key_ip};
    if (holds_none(raw, updates, 2) != 1)
        goto done;
    if (properties != NULL && properties != Py_None &&
        (holds_none(properties, updates, 2) != 1 || holds_none(properties, scrubbed, 3) != 1))
        goto done;
    own = properties != NULL && properties != Py_None ? Py_NewRef(properties) : PyDict_New();
    data = own == NULL ? NULL : PyDict_New();
    if (data == NULL || PyDict_SetItem(data, key_distinct_id, distinct_id) < 0 ||
        PyDict_SetItem(data, key_properties, own) < 0 ||
        PyDict_SetItem(data, key_timestamp, timestamp) < 0)
        goto done;
    /* as tuple.__new__(Captured, ...) makes a named tuple */
    event = captured->tp_alloc(captured, 3);
    if (event == NULL)
        goto done;
    PyTuple_SET_ITEM(event, 0, Py_NewRef(name));
    PyTuple_SET_ITEM(event, 1, data);
    data = NULL; /* the event holds it now */
    /* any str, a subclass too, as the loop's isinstance(uuid, str) */
    PyTuple_SET_ITEM(event, 2, Py_NewRef(uuid != NULL && PyUnicode_Check(uuid) ? uuid : Py_None));
done:
    Py_XDECREF(name);
    Py_XDECREF(properties);
    Py_XDECREF(distinct_id);
    Py_XDECREF(timestamp);
    Py_XDECREF(uuid);
    Py_XDECREF(own);
    Py_XDECREF(data);
    return event;
}

static PyObject *
v0_events(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyType_Check(args[1]) ||
        !PyType_IsSubtype((PyTypeObject *)args[1], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "v0_events(docs: list, captured: a tuple type)");
        return NULL;
    }
    PyObject *docs = args[0];
    Py_ssize_t n = PyList_GET_SIZE(docs);
    PyObject *events = PyList_New(n);
    if (events == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        /* A key's __eq__ may have changed the batch (see get_ref): then the loop decides. */
        PyObject *event = NULL;
        if (PyList_GET_SIZE(docs) == n) {
            PyObject *raw = Py_NewRef(PyList_GET_ITEM(docs, i));
            event = v0_event(raw, (PyTypeObject *)args[1]);
            Py_DECREF(raw);
        }
        if (event == NULL) {
            Py_DECREF(events);
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_NONE;
        }
        PyList_SET_ITEM(events, i, event);
    }
    if (PyList_GET_SIZE(docs) != n) {
        Py_DECREF(events);
        Py_RETURN_NONE;
    }
    return events;
}

static PyMethodDef methods[] = {
    {"nothing_to_redact", nothing_to_redact, METH_O,
     "True when no string value inside `data` (a dict or list) can hold a built-in redact "
     "pattern; False means maybe."},
    {"exceeds_depth", (PyCFunction)(void (*)(void))exceeds_depth, METH_FASTCALL,
     "Whether dicts and lists in `doc` nest more than `max_depth` levels (`doc` is level 1)."},
    {"v0_events", (PyCFunction)(void (*)(void))v0_events, METH_FASTCALL,
     "The PostHog batch loop for plain SDK events: a list of `captured`, or None."},
    {"floor_utc_text", (PyCFunction)(void (*)(void))floor_utc_text, METH_FASTCALL,
     "`YYYY-MM-DDTHH:MM:SSZ` floored to `step` seconds (a divisor of a day); None for other "
     "text."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "router._speedups",
    .m_doc = "Hot loops of the ingest path in C; each has a pure-Python twin.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    struct {
        PyObject **key;
        const char *text;
    } keys[] = {
        {&key_event, "event"},         {&key_properties, "properties"},
        {&key_distinct_id, "distinct_id"}, {&key_timestamp, "timestamp"},
        {&key_uuid, "uuid"},           {&key_token, "token"},
        {&key_dollar_token, "$token"}, {&key_ip, "$ip"},
        {&key_set, "$set"},            {&key_set_once, "$set_once"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (*keys[i].key == NULL && (*keys[i].key = PyUnicode_InternFromString(keys[i].text)) == NULL)
            return NULL;
    return PyModule_Create(&module);
}
