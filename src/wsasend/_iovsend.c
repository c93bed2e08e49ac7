/* wsasend._iovsend: sendmsg(2) of a list of buffers, for the compiled build's hot paths.
 *
 * Why (issue 11): socket.socket.sendmsg() converts each buffer of its list with the argument
 * parser ("y*"), about 500 instructions a buffer measured with callgrind, which is a third of
 * the whole cost of a posted 4x32 B send. This function takes a bytes object's pointer and
 * length as they are and asks any other object for its buffer directly. It is the same system
 * call with the same arguments: no payload byte is copied (SPEC S2.1), the flags are passed
 * through, and errors are raised as socket.sendmsg raises them (an OSError subclass chosen by
 * errno: BlockingIOError for EAGAIN, and so on).
 *
 * Only the engine calls it, only on an exact socket.socket, and only from the compiled build;
 * the plain-Python build calls socket.sendmsg (see _engine.py, _IOV_SENDMSG).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* Buffers handled without a heap allocation. Arbitrary: a batch of 64 sends of one buffer. */
#define ON_STACK 64

PyDoc_STRVAR(sendmsg_doc,
"sendmsg(fd, buffers, flags, /) -> int\n\n"
"sendmsg(2) of ``buffers`` (a list of bytes-like objects, not copied) on descriptor ``fd``\n"
"with ``flags``; the number of bytes sent. Raises OSError as socket.sendmsg does.");

static PyObject *
iov_sendmsg(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "sendmsg() takes exactly 3 arguments (fd, buffers, flags)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (fd < INT_MIN || fd > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "descriptor out of range");
        return NULL;
    }
    PyObject *list = args[1];
    if (!PyList_Check(list)) {
        PyErr_Format(PyExc_TypeError, "buffers must be a list, not %.200s", Py_TYPE(list)->tp_name);
        return NULL;
    }
    long flags = PyLong_AsLong(args[2]);
    if (flags == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (flags < INT_MIN || flags > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "flags out of range");
        return NULL;
    }

    Py_ssize_t count = PyList_GET_SIZE(list);
    if (count > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many buffers");
        return NULL;
    }
    struct iovec stack_iov[ON_STACK];
    PyObject *stack_held[ON_STACK];
    Py_buffer stack_views[ON_STACK];
    struct iovec *iov = stack_iov;
    PyObject **held = stack_held;     /* a reference to every bytes object of the list */
    Py_buffer *views = stack_views;   /* the buffer of every other object */
    Py_ssize_t nheld = 0, nviews = 0, i;
    PyObject *result = NULL;

    if (count > ON_STACK) {
        iov = PyMem_New(struct iovec, count);
        held = PyMem_New(PyObject *, count);
        views = PyMem_New(Py_buffer, count);
        if (iov == NULL || held == NULL || views == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    /* Every item is held (a reference, or its buffer) before the GIL is released, so another
     * thread that changes the list or the objects cannot free or move memory being sent. */
    for (i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (PyBytes_CheckExact(item)) {
            Py_INCREF(item);
            held[nheld++] = item;
            iov[i].iov_base = PyBytes_AS_STRING(item);
            iov[i].iov_len = (size_t)PyBytes_GET_SIZE(item);
        }
        else {
            if (PyObject_GetBuffer(item, &views[nviews], PyBUF_SIMPLE) < 0) {
                goto done;
            }
            iov[i].iov_base = views[nviews].buf;
            iov[i].iov_len = (size_t)views[nviews].len;
            nviews++;
        }
    }

    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)count;
    ssize_t n;
    int err;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        n = sendmsg((int)fd, &msg, (int)flags);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n >= 0 || err != EINTR) {
            break;
        }
        /* As socket.sendmsg does (PEP 475): run the signal handlers, then try again. */
        if (PyErr_CheckSignals() < 0) {
            goto done;
        }
    }
    if (n < 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    result = PyLong_FromSsize_t(n);

done:
    for (i = 0; i < nheld; i++) {
        Py_DECREF(held[i]);
    }
    for (i = 0; i < nviews; i++) {
        PyBuffer_Release(&views[i]);
    }
    if (iov != stack_iov) {
        PyMem_Free(iov);
        PyMem_Free(held);
        PyMem_Free(views);
    }
    return result;
}

static PyMethodDef iovsend_methods[] = {
    {"sendmsg", (PyCFunction)(void (*)(void))iov_sendmsg, METH_FASTCALL, sendmsg_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef iovsend_module = {
    PyModuleDef_HEAD_INIT,
    "wsasend._iovsend",
    "sendmsg(2) of a list of buffers without per-buffer argument parsing (compiled build only).",
    0,
    iovsend_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__iovsend(void)
{
    return PyModuleDef_Init(&iovsend_module);
}
