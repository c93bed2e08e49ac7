/* wsasend._iovsend: the socket calls of the compiled build's hot paths, without CPython's
 * per-call argument parsing: sendmsg(2) of a list of buffers, recv(2), and SO_ERROR.
 *
 * Why (issue 11): socket.socket.sendmsg() converts each buffer of its list with the argument
 * parser ("y*"), about 500 instructions a buffer measured with callgrind, which is a third of
 * the whole cost of a posted 4x32 B send. This function takes a bytes object's pointer and
 * length as they are and asks any other object for its buffer directly. It is the same system
 * call with the same arguments: no payload byte is copied (SPEC S2.1), the flags are passed
 * through, and errors are raised as socket.sendmsg raises them (an OSError subclass chosen by
 * errno: BlockingIOError for EAGAIN, and so on).
 *
 * recv and so_error serve WSATransport's stream reader on uvloop's request/response path
 * (socket.recv and socket.getsockopt parse a tuple of arguments per call); recv passes
 * MSG_DONTWAIT, so it never blocks whatever the descriptor's mode.
 *
 * Only the engine and the transport call these, only on an exact socket.socket, and only in
 * the compiled build; the plain-Python build calls the socket methods (see _engine.py,
 * _IOV_SENDMSG, and _transport.py, _IOV_RECV).
 *
 * Each function takes the socket object, not a number, and reads its descriptor right before
 * the system call (SPEC S5.11: never a descriptor that is no longer ours). socket.close() sets
 * the object's descriptor to -1 before it closes the number, so a close from another thread
 * makes the call fail with EBADF instead of reaching a socket that took the number since.
 * A call that releases the GIL reads it after releasing, exactly as socket.sendmsg does. (A
 * first version took sock.fileno() from the caller and then released the GIL: another thread
 * could close the socket and a new socket take the number in between, and
 * tests/reliability/test_fd_lifecycle.py caught bytes reaching that socket. Holding the GIL
 * across every sendmsg, large ones included, instead starved the other threads of the same
 * test, whose loop thread sends without pause.)
 *
 * recv, so_error and small sends (HOLD_GIL_BYTES) keep the GIL across their one non-blocking
 * call, as uvloop does for its reads and writes: releasing and taking the GIL back costs about
 * 200 instructions a call (callgrind, issue 11: a request on uvloop made three such calls,
 * about a quarter of what it cost over the stock transport), and the loop releases the GIL
 * between its callbacks anyway. Holding it also lets recv read small messages into one static buffer
 * (see READ_SCRATCH).
 *
 * The descriptor is read from CPython's socket object layout (Modules/socketmodule.h,
 * PySocketSockObject: the descriptor follows the object header; not an installed header).
 * _engine checks that layout at import with descriptor() on a real socket, open and closed,
 * and uses none of these functions if it does not hold.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

/* The head of CPython's socket object (see above). */
typedef struct {
    PyObject_HEAD
    int sock_fd;
} sock_head;

/* _socket.socket: every argument must be one (or a subclass) for sock_head to apply. */
static PyTypeObject *socket_type = NULL;
/* socket.socket, the Python class (found at import, with its _closed member: see below). */
static PyTypeObject *py_socket_type;

/* The descriptor, read now: right before the system call (see the top of this file). */
#define SOCK_FD(obj) (*(volatile int *)&((sock_head *)(obj))->sock_fd)

static int
check_socket(PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, socket_type)) {
        PyErr_Format(PyExc_TypeError, "a socket.socket is required, not %.200s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    return 0;
}

/* A sendmsg of at most this many bytes keeps the GIL (see the top of this file): a reply, or a
 * small send awaited on its own, is the case where releasing and taking it back is a visible
 * share of the call. Larger batches (a flush of many queued sends) release it, so a loop
 * thread that keeps sending still lets other threads run between its calls. Arbitrary: the
 * kernel copies 64 KiB in a few microseconds. */
#define HOLD_GIL_BYTES (64 * 1024)

/* The system call of sendmsg() below, with or without the GIL: the descriptor is read here,
 * right before it. One buffer goes out with send(2), the same operation without the msghdr and
 * iovec the kernel would copy in and check (cheaper per call: request/response replies are
 * mostly one buffer). */
static ssize_t
send_iov(PyObject *sock, const struct msghdr *msg, int flags)
{
    int fd = SOCK_FD(sock);
    if (msg->msg_iovlen == 1) {
        return send(fd, msg->msg_iov[0].iov_base, msg->msg_iov[0].iov_len, flags);
    }
    return sendmsg(fd, msg, flags);
}

/* Buffers handled without a heap allocation. Arbitrary: a batch of 64 sends of one buffer. */
#define ON_STACK 64

/* An int argument that must fit a C int (the flags), or -1 with an exception set. */
static int
int_arg(PyObject *obj, const char *what, int *out)
{
    long value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < INT_MIN || value > INT_MAX) {
        PyErr_Format(PyExc_OverflowError, "%s out of range", what);
        return -1;
    }
    *out = (int)value;
    return 0;
}

PyDoc_STRVAR(sendmsg_doc,
"sendmsg(sock, buffers, flags, /) -> int\n\n"
"sendmsg(2) of ``buffers`` (a list of bytes-like objects, not copied) on socket ``sock``\n"
"with ``flags`` and MSG_DONTWAIT; the number of bytes sent. Raises OSError as\n"
"socket.sendmsg does.");

PyDoc_STRVAR(sendmsg_rest_doc,
"sendmsg_rest(sock, buffers, flags, /) -> int\n\n"
"sendmsg(sock, buffers, flags), but the number of bytes of ``buffers`` the kernel did NOT\n"
"take: 0 when it took every byte.");

/* Why a second spelling (issue 11): the hot paths send a whole reply or datagram at once and
 * only need to know whether every byte went. A count above 256 is a new int object (CPython
 * caches the small ones), made and freed per call: ~170 instructions of a keep-alive request
 * or a posted datagram, callgrind. What is left is 0 when everything went, a cached object. */
static PyObject *sendmsg_impl(PyObject *const *args, Py_ssize_t nargs, int rest, const char *name);

static PyObject *
iov_sendmsg(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    return sendmsg_impl(args, nargs, 0, "sendmsg");
}

static PyObject *
iov_sendmsg_rest(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    return sendmsg_impl(args, nargs, 1, "sendmsg_rest");
}

/* The iovecs of one sendmsg() call, with what keeps their memory alive for it: a reference to
 * every bytes object, and the buffer of every other object (a buffer export also keeps a
 * bytearray from being resized under the call). Up to ON_STACK buffers need no allocation. */
typedef struct {
    struct iovec *iov;
    PyObject **held;
    Py_buffer *views;
    Py_ssize_t count, nheld, nviews;
    struct iovec stack_iov[ON_STACK];
    PyObject *stack_held[ON_STACK];
    Py_buffer stack_views[ON_STACK];
} iov_set;

/* Room for ``count`` buffers; -1 with MemoryError set. iov_set_release() is due either way. */
static int
iov_set_init(iov_set *set, Py_ssize_t count)
{
    set->iov = set->stack_iov;
    set->held = set->stack_held;
    set->views = set->stack_views;
    set->count = set->nheld = set->nviews = 0;
    if (count > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many buffers");
        return -1;
    }
    if (count > ON_STACK) {
        /* One block for the three arrays (each of its items a multiple of 8 bytes, so each
         * array after the first stays aligned): a flush of a deep queue gathers more than
         * ON_STACK buffers every call, and three allocations and three frees were ~50
         * instructions a send behind a slow reader (callgrind, issue 11). */
        size_t each = sizeof(struct iovec) + sizeof(PyObject *) + sizeof(Py_buffer);
        char *block = ((size_t)count > PY_SSIZE_T_MAX / each) ? NULL : PyMem_Malloc((size_t)count * each);
        set->iov = (struct iovec *)block;
        if (block == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        set->held = (PyObject **)(block + (size_t)count * sizeof(struct iovec));
        set->views = (Py_buffer *)(block + (size_t)count * (sizeof(struct iovec) + sizeof(PyObject *)));
    }
    return 0;
}

/* The next iovec: ``item``'s bytes, held for the call (room was made by iov_set_init). */
static int
iov_set_add(iov_set *set, PyObject *item)
{
    struct iovec *iov = &set->iov[set->count];
    if (PyBytes_CheckExact(item)) {
        Py_INCREF(item);
        set->held[set->nheld++] = item;
        iov->iov_base = PyBytes_AS_STRING(item);
        iov->iov_len = (size_t)PyBytes_GET_SIZE(item);
    }
    else {
        Py_buffer *view = &set->views[set->nviews];
        /* Held for the export: a __buffer__ (3.12+) can drop the list's reference to its own
         * object, and CPython's export goes on using it after the method returns (a use after
         * free, found by the test of a list changed under the gathering). A successful export
         * holds its own reference. */
        Py_INCREF(item);
        int failed = PyObject_GetBuffer(item, view, PyBUF_SIMPLE) < 0;
        Py_DECREF(item);
        if (failed) {
            return -1;
        }
        set->nviews++;
        iov->iov_base = view->buf;
        iov->iov_len = (size_t)view->len;
    }
    set->count++;
    return 0;
}

/* Every item of ``list`` into ``set``, which has room for ``room`` in all. A buffer export can
 * run Python code (a class with __buffer__, 3.12+) that changes the list under us: the list is
 * held while read and its size read again per item, and outgrowing ``room`` is an error (the
 * caller checks that it did not shrink), never a read past its end. The buffers the engine
 * hands over (bytes, memoryview) run no Python code to export. */
static int
iov_set_add_list(iov_set *set, PyObject *list, Py_ssize_t room, const char *name)
{
    int status = 0;
    Py_ssize_t i;
    Py_INCREF(list);
    for (i = 0; i < PyList_GET_SIZE(list); i++) {
        if (set->count == room) {
            PyErr_Format(PyExc_RuntimeError, "a list grew during %s()", name);
            status = -1;
            break;
        }
        if (iov_set_add(set, PyList_GET_ITEM(list, i)) < 0) {
            status = -1;
            break;
        }
    }
    Py_DECREF(list);
    return status;
}

/* After iov_set_add_list: -1 with RuntimeError set when a list shrank under the gathering. */
static int
iov_set_check_full(iov_set *set, Py_ssize_t room, const char *name)
{
    if (set->count != room) {
        PyErr_Format(PyExc_RuntimeError, "a list shrank during %s()", name);
        return -1;
    }
    return 0;
}

static void
iov_set_release(iov_set *set)
{
    Py_ssize_t i;
    for (i = 0; i < set->nheld; i++) {
        Py_DECREF(set->held[i]);
    }
    for (i = 0; i < set->nviews; i++) {
        PyBuffer_Release(&set->views[i]);
    }
    if (set->iov != set->stack_iov) {
        PyMem_Free(set->iov);  /* (the one block of iov_set_init; NULL if it failed) */
    }
}

/* Drop the first ``n`` bytes of ``msg``'s iovecs (fewer than they hold): the rest of a partial
 * write, to be sent by the next call. */
static void
msg_advance(struct msghdr *msg, size_t n)
{
    while (n >= msg->msg_iov[0].iov_len) {
        n -= msg->msg_iov[0].iov_len;
        msg->msg_iov++;
        msg->msg_iovlen--;
    }
    msg->msg_iov[0].iov_base = (char *)msg->msg_iov[0].iov_base + n;
    msg->msg_iov[0].iov_len -= n;
}

/* The system call for the iovecs of ``set``: the bytes sent (or, with ``rest``, not sent).
 *
 * With ``more`` (a stream socket's batch: sendmsg_parts), a partial write is followed by
 * another call for the rest, until everything went or a call takes nothing: the kernel's
 * buffer is then full, and the caller waits for writability instead of gathering the rest
 * again only to meet EAGAIN, an exception made and caught (issue 11). The count is what all
 * the calls took; an error after a partial write is left for the caller's next call to meet,
 * so that the bytes that went are always reported. Without ``more`` the call is one sendmsg,
 * as socket.sendmsg's. */
static PyObject *
iov_set_send(PyObject *sock, iov_set *set, int flags, int rest, int more)
{
    struct msghdr msg;
    size_t total = 0, sent = 0;
    Py_ssize_t i;
    for (i = 0; i < set->count; i++) {
        total += set->iov[i].iov_len;
    }
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = set->iov;
    msg.msg_iovlen = (size_t)set->count;
    ssize_t n;
    int err;
    flags |= MSG_DONTWAIT;  /* never blocks, whatever the descriptor's mode */
    for (;;) {
        if (total - sent <= HOLD_GIL_BYTES) {
            n = send_iov(sock, &msg, flags);
            err = errno;
        }
        else {
            Py_BEGIN_ALLOW_THREADS
            n = send_iov(sock, &msg, flags);
            err = errno;
            Py_END_ALLOW_THREADS
        }
        if (n > 0 && more && sent + (size_t)n < total) {
            sent += (size_t)n;
            msg_advance(&msg, (size_t)n);
            continue;
        }
        if (n >= 0 || err != EINTR || sent) {
            break;  /* (after a partial write, what went is reported, whatever the error) */
        }
        /* As socket.sendmsg does (PEP 475): run the signal handlers, then try again. */
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
    if (n < 0) {
        if (!sent) {
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            return NULL;
        }
        n = 0;
    }
    sent += (size_t)n;
    return rest ? PyLong_FromSize_t(total - sent) : PyLong_FromSize_t(sent);
}

/* The arguments of the sendmsg calls, (sock, a list named ``what``, flags), checked: the list
 * and the flags, or -1 with TypeError (or OverflowError) set. */
static int
send_args(PyObject *const *args, Py_ssize_t nargs, const char *name, const char *what, PyObject **list, int *flags)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly 3 arguments (sock, %s, flags)", name, what);
        return -1;
    }
    if (check_socket(args[0]) < 0) {
        return -1;
    }
    if (!PyList_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "%s must be a list, not %.200s", what, Py_TYPE(args[1])->tp_name);
        return -1;
    }
    *list = args[1];
    return int_arg(args[2], "flags", flags);
}

static PyObject *
sendmsg_impl(PyObject *const *args, Py_ssize_t nargs, int rest, const char *name)
{
    PyObject *list;
    int flags;
    if (send_args(args, nargs, name, "buffers", &list, &flags) < 0) {
        return NULL;
    }
    PyObject *sock = args[0];
    iov_set set;
    PyObject *result = NULL;
    Py_ssize_t count = PyList_GET_SIZE(list);
    if (iov_set_init(&set, count) < 0) {
        goto done;
    }
    if (iov_set_add_list(&set, list, count, name) < 0 || iov_set_check_full(&set, count, name) < 0) {
        goto done;
    }
    result = iov_set_send(sock, &set, flags, rest, 0);
done:
    iov_set_release(&set);
    return result;
}

PyDoc_STRVAR(sendmsg_parts_doc,
"sendmsg_parts(sock, parts, flags, /) -> int\n\n"
"sendmsg(sock, buffers, flags) where ``buffers`` is every buffer of the lists in ``parts``\n"
"(a list of lists), in order, no list made of them. Unless ``flags`` has MSG_OOB, a partial\n"
"write is followed by another sendmsg for the rest, until all went or one takes nothing: the\n"
"total of the calls (an error after a partial write is left for the next call).");

/* Why (issue 11): a coalesced batch was a new list grown by ``iov += op._bufs`` per queued send,
 * and the growing (list_extend's reallocations) cost ~220 instructions a send behind a slow
 * reader, callgrind, more than the rest of the gathering. The queue now hands over the sends'
 * own lists (SendQueue.next_parts) and they are read here, item by item, straight into the
 * iovecs. */
static PyObject *
iov_sendmsg_parts(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    PyObject *parts;
    int flags;
    if (send_args(args, nargs, "sendmsg_parts", "parts", &parts, &flags) < 0) {
        return NULL;
    }
    PyObject *sock = args[0];
    Py_ssize_t count = 0, i;
    for (i = 0; i < PyList_GET_SIZE(parts); i++) {
        PyObject *part = PyList_GET_ITEM(parts, i);
        if (!PyList_Check(part)) {
            PyErr_Format(PyExc_TypeError, "each part must be a list, not %.200s", Py_TYPE(part)->tp_name);
            return NULL;
        }
        count += PyList_GET_SIZE(part);
    }
    iov_set set;
    PyObject *result = NULL;
    if (iov_set_init(&set, count) < 0) {
        goto done;
    }
    for (i = 0; i < PyList_GET_SIZE(parts); i++) {
        PyObject *part = PyList_GET_ITEM(parts, i);
        if (!PyList_Check(part)) {  /* (put there by an export: see iov_set_add_list) */
            PyErr_SetString(PyExc_RuntimeError, "a list changed during sendmsg_parts()");
            goto done;
        }
        if (iov_set_add_list(&set, part, count, "sendmsg_parts") < 0) {
            goto done;
        }
    }
    if (iov_set_check_full(&set, count, "sendmsg_parts") < 0) {
        goto done;
    }
    result = iov_set_send(sock, &set, flags, 0, (flags & MSG_OOB) == 0);
done:
    iov_set_release(&set);
    return result;
}

PyDoc_STRVAR(recv_doc,
"recv(sock, size, /) -> bytes\n\n"
"recv(2) of at most ``size`` bytes on socket ``sock`` with MSG_DONTWAIT (never blocks,\n"
"whatever the descriptor's mode); b'' at end of stream. Raises OSError as socket.recv does\n"
"(BlockingIOError when nothing is there).");

/* Reads of at most this many bytes go into this buffer, and the bytes object is made at the
 * size read: a request of a few hundred bytes then costs one small allocation instead of a
 * 64 KiB one shrunk afterwards (malloc and realloc: about 450 instructions a read, callgrind,
 * issue 11). It is used only with the GIL held from the recv to the copy, so one buffer serves
 * every thread (this module is loaded only by interpreters that share the main GIL: it does
 * not declare a per-interpreter GIL). The transport's small reads are 64 KiB (SMALL_READ in
 * _transport.py); a bulk read asks for more and is read in place. */
#define READ_SCRATCH (64 * 1024)
#ifndef Py_GIL_DISABLED
static char read_scratch[READ_SCRATCH];
#endif

static PyObject *
iov_recv(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "recv() takes exactly 2 arguments (sock, size)");
        return NULL;
    }
    PyObject *sock = args[0];
    if (check_socket(sock) < 0) {
        return NULL;
    }
    Py_ssize_t size = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);  /* (as socket.recv) */
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
        return NULL;
    }
    if (size == 0) {
        return PyBytes_FromStringAndSize(NULL, 0);  /* (socket.recv(0) makes no system call) */
    }
    PyObject *data = NULL;
    char *into;
#ifndef Py_GIL_DISABLED
    if (size <= READ_SCRATCH) {
        into = read_scratch;
    }
    else
#endif
    {
        data = PyBytes_FromStringAndSize(NULL, size);
        if (data == NULL) {
            return NULL;
        }
        into = PyBytes_AS_STRING(data);
    }
    ssize_t n;
    for (;;) {
        /* The GIL is held (see the top of this file): MSG_DONTWAIT, so it is not held long. */
        n = recv(SOCK_FD(sock), into, (size_t)size, MSG_DONTWAIT);
        if (n >= 0 || errno != EINTR) {
            break;
        }
        /* As socket.recv does (PEP 475). A handler may read too: the buffer holds nothing yet. */
        if (PyErr_CheckSignals() < 0) {
            Py_XDECREF(data);
            return NULL;
        }
    }
    if (n < 0) {
        Py_XDECREF(data);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (data == NULL) {
        return PyBytes_FromStringAndSize(into, n);
    }
    if (n != size && _PyBytes_Resize(&data, n) < 0) {
        return NULL;
    }
    return data;
}

PyDoc_STRVAR(so_error_doc,
"so_error(sock, /) -> int\n\n"
"getsockopt(SOL_SOCKET, SO_ERROR) on socket ``sock``: the socket's pending error (0 for none), which the\n"
"call clears. Raises OSError as socket.getsockopt does.");

static PyObject *
iov_so_error(PyObject *module, PyObject *arg)
{
    (void)module;
    int value = 0, res;
    socklen_t len = sizeof(value);
    if (check_socket(arg) < 0) {
        return NULL;
    }
    res = getsockopt(SOCK_FD(arg), SOL_SOCKET, SO_ERROR, &value, &len);  /* GIL held: see the top */
    if (res < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(value);
}

PyDoc_STRVAR(tcp_nodelay_doc,
"tcp_nodelay(sock, /) -> None\n\n"
"setsockopt(IPPROTO_TCP, TCP_NODELAY, 1) on socket ``sock``, as asyncio's transports set it.\n"
"Raises OSError as socket.setsockopt does.");

/* socket.setsockopt() parses its three arguments (a format string, as PyArg_ParseTuple reads
 * it) and is found as a method: ~1,000 instructions of every connection a server accepts, for
 * one system call (callgrind, issue 11, workload HC1). */
static PyObject *
iov_tcp_nodelay(PyObject *module, PyObject *arg)
{
    (void)module;
    int one = 1;
    if (check_socket(arg) < 0) {
        return NULL;
    }
    if (setsockopt(SOCK_FD(arg), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {  /* (GIL held) */
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sockname_doc,
"sockname(sock, /) -> object\n\n"
"``sock.getsockname()``, the same object for the same address: an AF_INET or AF_INET6\n"
"address equal, byte for byte, to the last one asked of that family is answered with the\n"
"tuple made for it (one getsockname(2), no formatting); any other is made by the socket's own\n"
"getsockname() (and raises what it raises).");

/* Why (issue 11, workload HC): a transport reads its socket's local address once, for
 * get_extra_info("sockname"), as asyncio's do. socket.getsockname() formats it each time
 * (inet_ntop and a tuple: ~2,900 instructions of every connection a server accepts), and a
 * server's connections mostly share one local address (its listening address and port, or one
 * of the host's few). The tuples are immutable, so a cached one is the answer a new call would
 * make: the cache is keyed by the kernel's whole sockaddr (address, port, IPv6 flow
 * information and scope), one entry per family, filled by the socket's own getsockname() so
 * the object is exactly the one it makes. Used under the GIL only (see READ_SCRATCH). */
static struct {
    struct sockaddr_storage addr;
    socklen_t len;
    PyObject *value;
} sockname_cache[2];

static PyObject *
iov_sockname(PyObject *module, PyObject *arg)
{
    (void)module;
    if (check_socket(arg) < 0) {
        return NULL;
    }
    struct sockaddr_storage addr;
    socklen_t len = sizeof(addr);
    memset(&addr, 0, sizeof(addr));
    int slot = -1;
    if (getsockname(SOCK_FD(arg), (struct sockaddr *)&addr, &len) == 0) {
        if (addr.ss_family == AF_INET && len == sizeof(struct sockaddr_in)) {
            slot = 0;
        }
        else if (addr.ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6)) {
            slot = 1;
        }
    }
#ifdef Py_GIL_DISABLED
    slot = -1;  /* (the cache is shared without a lock: only where the GIL guards it) */
#endif
    if (!Py_IS_TYPE(arg, py_socket_type)) {
        /* (A subclass may answer getsockname() its own way: neither cached nor answered from
         * the cache, which holds socket.socket's answers; review, stop 51.) */
        slot = -1;
    }
    if (slot >= 0 && sockname_cache[slot].value != NULL && sockname_cache[slot].len == len
        && memcmp(&sockname_cache[slot].addr, &addr, (size_t)len) == 0) {
        return Py_NewRef(sockname_cache[slot].value);
    }
    PyObject *value = PyObject_CallMethod(arg, "getsockname", NULL);
    if (value == NULL || slot < 0 || !PyTuple_CheckExact(value)) {
        return value;
    }
    /* (The socket's answer is for the address read above unless another thread rebound the
     * socket in between, which a connected socket cannot do: a stream socket's local address
     * is fixed once it is connected. Checked anyway: cached only when a second read agrees.) */
    struct sockaddr_storage again;
    socklen_t again_len = sizeof(again);
    memset(&again, 0, sizeof(again));
    if (getsockname(SOCK_FD(arg), (struct sockaddr *)&again, &again_len) == 0 && again_len == len
        && memcmp(&again, &addr, (size_t)len) == 0) {
        Py_XSETREF(sockname_cache[slot].value, Py_NewRef(value));
        memcpy(&sockname_cache[slot].addr, &addr, (size_t)len);
        sockname_cache[slot].len = len;
    }
    return value;
}

PyDoc_STRVAR(accept_doc,
"accept(sock, nonblocking=False, /) -> (fd, address) or None\n\n"
"``sock._accept()`` of a listening AF_INET, AF_INET6 or AF_UNIX socket, but None instead of\n"
"BlockingIOError when no connection waits. The new descriptor is close-on-exec (and with a true\n"
"``nonblocking``, O_NONBLOCK: accept4's SOCK_NONBLOCK) and the address the object\n"
"socket.accept() makes for it. Raises OSError otherwise (ConnectionAbortedError, EMFILE, ...)\n"
"as socket.accept() does; ValueError, the descriptor closed again, for another family (callers\n"
"use it for these three only); TypeError for a wrong number of arguments.");

/* Why (issue 11, a server with one client at a time): a server accepts until the queue is empty,
 * and socket.accept() says so by raising BlockingIOError, whose message it formats from
 * strerror() in the locale's encoding; made, raised and caught, that cost ~8,000 instructions of
 * every wake-up of a listening socket, one per connection when they come one at a time (a tenth
 * of such a connection's CPU on uvloop). */

/* A new tuple of ``first`` and ``second``, both stolen (either may be NULL: an error is set
 * then, and the other is released). Py_BuildValue parses its format string at every call:
 * ~1,200 instructions of the two tuples a connection needs (issue 11, workload HC). */
static PyObject *
steal_pair(PyObject *first, PyObject *second)
{
    PyObject *pair = first != NULL && second != NULL ? PyTuple_New(2) : NULL;
    if (pair == NULL) {
        Py_XDECREF(first);
        Py_XDECREF(second);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, first);
    PyTuple_SET_ITEM(pair, 1, second);
    return pair;
}

/* The dotted quad inet_ntop writes for an IPv4 address ("127.0.0.1": each byte in decimal,
 * no leading zeros), as an ASCII str. inet_ntop formats it with sprintf, ~1,700 instructions of
 * every connection a server accepts (issue 11, workload HC; uvloop's own transport formats no
 * address at all until asked). tests/core/test_accept.py compares it with socket.accept()'s
 * for addresses with one-, two- and three-digit bytes. */
static PyObject *
ipv4_text(const struct in_addr *in)
{
    const unsigned char *octets = (const unsigned char *)&in->s_addr;  /* network order: a.b.c.d */
    char text[sizeof("255.255.255.255")];
    Py_ssize_t n = 0;
    for (int i = 0; i < 4; i++) {
        unsigned int v = octets[i];
        if (i > 0) {
            text[n++] = '.';
        }
        if (v >= 100) {
            text[n++] = (char)('0' + v / 100);
        }
        if (v >= 10) {
            text[n++] = (char)('0' + v / 10 % 10);
        }
        text[n++] = (char)('0' + v % 10);
    }
    PyObject *str = PyUnicode_New(n, 127);
    if (str != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(str), text, (size_t)n);
    }
    return str;
}

/* The address object CPython's socket module makes for ``addr`` (Modules/socketmodule.c,
 * makesockaddr) for the three families: (host, port); (host, port, flowinfo, scope_id); for
 * AF_UNIX, the path as str, or bytes for Linux's abstract namespace (a leading NUL). */
static PyObject *
accept_address(const struct sockaddr_storage *addr, socklen_t len)
{
    if (len == 0) {
        Py_RETURN_NONE;  /* (as makesockaddr: no address) */
    }
    switch (addr->ss_family) {
    case AF_INET: {
        const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
        return steal_pair(ipv4_text(&a->sin_addr), PyLong_FromLong((long)ntohs(a->sin_port)));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
        char host[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        PyObject *address = PyTuple_New(4);
        if (address == NULL) {
            return NULL;
        }
        PyObject *items[4] = {
            PyUnicode_FromString(host),
            PyLong_FromLong((long)ntohs(a->sin6_port)),
            PyLong_FromUnsignedLong((unsigned long)ntohl(a->sin6_flowinfo)),
            PyLong_FromUnsignedLong((unsigned long)a->sin6_scope_id),
        };
        int failed = 0;
        for (Py_ssize_t i = 0; i < 4; i++) {
            failed |= items[i] == NULL;
            PyTuple_SET_ITEM(address, i, items[i] != NULL ? items[i] : Py_NewRef(Py_None));
        }
        if (failed) {
            Py_DECREF(address);
            return NULL;
        }
        return address;
    }
    case AF_UNIX: {
        const struct sockaddr_un *a = (const struct sockaddr_un *)addr;
        size_t head = offsetof(struct sockaddr_un, sun_path);
        size_t n = (size_t)len > head ? (size_t)len - head : 0;
        if (n > 0 && a->sun_path[0] == 0) {
            return PyBytes_FromStringAndSize(a->sun_path, (Py_ssize_t)n);
        }
        /* A NUL-terminated path, '' for an unnamed peer (the storage was zeroed, and is longer
         * than sun_path: a path that fills sun_path still ends in a NUL). */
        return PyUnicode_DecodeFSDefault(a->sun_path);
    }
    default:
        PyErr_Format(PyExc_ValueError, "accept(): address family %d is not AF_INET, AF_INET6 or AF_UNIX",
                     (int)addr->ss_family);
        return NULL;
    }
}

/* ``nonblocking`` (issue 11, a connection per request): the server makes the socket object with
 * ``type | SOCK_NONBLOCK``, which CPython's socket initializer takes as "timeout 0" without an
 * ioctl, and the transport then skips its setblocking(False): one system call less a connection. */
static PyObject *
iov_accept(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "accept() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *sock = args[0];
    if (check_socket(sock) < 0) {
        return NULL;
    }
    int flags = SOCK_CLOEXEC;
    if (nargs == 2) {
        int nonblocking = PyObject_IsTrue(args[1]);
        if (nonblocking < 0) {
            return NULL;
        }
        if (nonblocking) {
            flags |= SOCK_NONBLOCK;
        }
    }
    struct sockaddr_storage addr;
    socklen_t len;
    int fd;
    for (;;) {
        len = sizeof(addr);
        memset(&addr, 0, sizeof(addr));
        /* (The GIL is let go, as socket.accept() does: a listening socket someone made blocking
         * again would wait here. The server's are non-blocking. The descriptor is read after
         * letting it go, as the top of this file says: read before, another thread could close
         * the socket and a new one take its number in between, and this call would accept the
         * new one's connection; review, stop 51, ~4% of tries in a race script.) */
        Py_BEGIN_ALLOW_THREADS
        fd = accept4(SOCK_FD(sock), (struct sockaddr *)&addr, &len, flags);
        Py_END_ALLOW_THREADS
        if (fd >= 0 || errno != EINTR) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {  /* as socket.accept() (PEP 475) */
            return NULL;
        }
    }
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            Py_RETURN_NONE;
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *address = accept_address(&addr, len);
    PyObject *result = address == NULL ? NULL : steal_pair(PyLong_FromLong(fd), address);
    if (result == NULL) {
        close(fd);  /* (nobody else has it) */
    }
    return result;
}

PyDoc_STRVAR(descriptor_doc,
"descriptor(sock, /) -> int\n\n"
"The descriptor as these functions read it from the socket object (-1 once closed); for the\n"
"layout check at import, which compares it with fileno().");

static PyObject *
iov_descriptor(PyObject *module, PyObject *arg)
{
    (void)module;
    if (check_socket(arg) < 0) {
        return NULL;
    }
    return PyLong_FromLong(SOCK_FD(arg));
}

PyDoc_STRVAR(bytes_list_copy_doc,
"bytes_list_copy(buffers, /) -> list\n\n"
"``list(buffers)`` for a list, left untracked by the garbage collector when every item is a\n"
"``bytes`` object (tracked as usual otherwise). For the captured buffers of a queued send\n"
"(SendEngine.post_list); TypeError when ``buffers`` is not a list.");

/* A queued send keeps a private copy of the caller's list (S2.1: the list is captured, the
 * bytes are not copied). With 10,000 sends queued behind a slow reader, the collector walked
 * each of those lists on every pass and promoted them to the old generation, whose full
 * collections they made more frequent (callgrind, issue 11: ~1,100 instructions a send went to
 * the collector, the lists a large share). A list that holds only bytes objects, which refer
 * to nothing, and that nobody else can reach (the engine never hands it out, never adds to it,
 * and drops it when the send ends) can never be part of a reference cycle, so the collector
 * has nothing to find in it: untracking it is safe. The items are checked here, on the copy,
 * so the promise does not depend on the caller (a list another thread changed since the
 * caller checked it is copied as it is now and stays tracked). */
static PyObject *
iov_bytes_list_copy(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_ssize_t i, n;
    PyObject *copy;
    if (!PyList_CheckExact(arg)) {
        PyErr_SetString(PyExc_TypeError, "bytes_list_copy() needs a list");
        return NULL;
    }
    copy = PyList_GetSlice(arg, 0, PyList_GET_SIZE(arg));
    if (copy == NULL) {
        return NULL;
    }
    n = PyList_GET_SIZE(copy);
    for (i = 0; i < n; i++) {
        if (!PyBytes_CheckExact(PyList_GET_ITEM(copy, i))) {
            return copy;
        }
    }
    if (PyObject_GC_IsTracked(copy)) {
        PyObject_GC_UnTrack(copy);
    }
    return copy;
}

PyDoc_STRVAR(gc_untrack_doc,
"gc_untrack(*objs) -> None\n\n"
"Take each object off the garbage collector's lists (if it is on them); see gc_track_all.");

/* The overlapped of a send queued deep behind a slow reader, off the collector's lists while it
 * waits (issue 11). Each such send otherwise survives two young collections, is promoted to the
 * old generation and makes its full collections come sooner: callgrind counted ~530 user-space
 * instructions a send in the collector with 10,000 queued, a tenth of the send. Unlike the
 * captured lists above, an overlapped CAN be in a cycle (its event points back at it; a waiter's
 * callbacks, a user's routine), so the engine keeps the promise this needs: every overlapped it
 * untracks is tracked again (gc_track_all) as it leaves the queue, whichever way it leaves
 * (completion or failure, both funnel through one function each). While untracked and queued it
 * is reachable from the queue, so no cycle through it can be garbage yet; an object it refers to
 * only looks referenced from outside to the collector, which keeps it alive: never freed early. */
static void
untrack(PyObject *obj)
{
    if (PyObject_GC_IsTracked(obj)) {  /* (0 for a type the collector does not know) */
        PyObject_GC_UnTrack(obj);
    }
}

static PyObject *
iov_gc_untrack(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        untrack(args[i]);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(gc_untrack_all_doc,
"gc_untrack_all(objs, /) -> None\n\n"
"gc_untrack(*objs) for the list ``objs``: a run's sends at once (see post_list).");

static PyObject *
iov_gc_untrack_all(PyObject *module, PyObject *objs)
{
    (void)module;
    if (!PyList_CheckExact(objs)) {
        PyErr_SetString(PyExc_TypeError, "gc_untrack_all() needs a list");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objs); i++) {
        untrack(PyList_GET_ITEM(objs, i));
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(gc_track_all_doc,
"gc_track_all(objs, /) -> None\n\n"
"Put every object of the list ``objs`` back on the garbage collector's lists (those of a type\n"
"the collector knows and not already there).");

static PyObject *
iov_gc_track_all(PyObject *module, PyObject *objs)
{
    (void)module;
    Py_ssize_t i;
    if (!PyList_CheckExact(objs)) {
        PyErr_SetString(PyExc_TypeError, "gc_track_all() needs a list");
        return NULL;
    }
    for (i = 0; i < PyList_GET_SIZE(objs); i++) {
        PyObject *obj = PyList_GET_ITEM(objs, i);
        if (PyObject_IS_GC(obj) && !PyObject_GC_IsTracked(obj)) {
            PyObject_GC_Track(obj);
        }
    }
    Py_RETURN_NONE;
}

#ifndef Py_GIL_DISABLED
PyDoc_STRVAR(spare_doc,
"spare(objs, tp, room, /) -> list\n\n"
"The objects of the list ``objs`` whose type is exactly ``tp`` and which nothing but that list\n"
"refers to, in order, at most ``room`` of them (see _engine._OV_POOL).");

/* Completed sends nobody can reach any more, for the engine to reuse (issue 11: making and
 * freeing an overlapped was ~500 user-space instructions of a send queued behind a slow reader,
 * callgrind). A reference count of 1 is the list's own reference: no caller, event, routine,
 * waiter or thread holds the object, and the exact type rules out a subclass (an interpreted one
 * may have weak references or a __dict__ of its own). Only with the GIL: a free-threaded build's
 * reference counts are not exact when read from another thread, so it has no such function. */
static PyObject *
iov_spare(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyType_Check(args[1]) || !PyLong_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "spare() needs a list, a type and an int");
        return NULL;
    }
    PyObject *objs = args[0];
    PyTypeObject *tp = (PyTypeObject *)args[1];
    Py_ssize_t room = PyLong_AsSsize_t(args[2]);
    if (room == -1 && PyErr_Occurred()) {
        return NULL;
    }
    /* The list is made first, at the most it can take, and filled in one pass: making it may
     * run a collection (Python 3.11 collects inside the allocation of a tracked object), and a
     * collection runs Python code (gc.callbacks, finalizers) and lets other threads in, any of
     * which can take a reference to a counted object. Counted before it and taken after it, a
     * second pass found fewer than it counted and read past the end of ``objs`` (review, stop
     * 51: a gc.callbacks hook keeping gc.get_objects() crashed it every time). Nothing runs
     * during the pass below: no call there can run Python code. One list made at its size, not
     * grown by PyList_Append (~50 instructions a send, issue 11); its unused slots are NULL
     * past the size it is given at the end. */
    if (room < 0) {
        room = 0;
    }
    Py_ssize_t n = PyList_GET_SIZE(objs), count = 0, i;
    PyObject *out = PyList_New(n < room ? n : room);
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t size = PyList_GET_SIZE(out);  /* (objs may have changed meanwhile: bounded by both) */
    for (i = 0; i < PyList_GET_SIZE(objs) && count < size; i++) {
        PyObject *obj = PyList_GET_ITEM(objs, i);
        if (Py_TYPE(obj) == tp && Py_REFCNT(obj) == 1) {
            PyList_SET_ITEM(out, count++, Py_NewRef(obj));
        }
    }
    Py_SET_SIZE(out, count);
    return out;
}
#endif

PyDoc_STRVAR(sock_type_doc,
"sock_type(sock, /) -> int\n\n"
"The C socket's own ``type`` member (a plain int): what ``_socket.socket.type.__get__(sock)``\n"
"gives, without the call through the descriptor's method wrapper.");

PyDoc_STRVAR(sock_family_doc,
"sock_family(sock, /) -> int\n\n"
"The C socket's own ``family`` member (a plain int), as ``sock_type`` reads ``type``.");

/* _socket.socket's "type" and "family" member descriptors, found at import (NULL: not there as
 * expected; the Python code then does not use these functions).
 *
 * Why (issue 11): socket.socket's properties of the same names convert the int to an enum
 * member on every read (~7,000 instructions on 3.11); the Python code reads the C members
 * through their descriptors instead (_sockutil.sock_type), but calling ``__get__`` from
 * compiled code still went through a method wrapper and an argument tuple: ~870 instructions,
 * six reads for each new connection of a server. The descriptor's own get function does the
 * same checks (a TypeError for an object that is not a socket) in a few dozen. */
static PyObject *type_descr = NULL;
static PyObject *family_descr = NULL;

static PyObject *
read_member(PyObject *descr, PyObject *sock)
{
    if (descr == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_socket.socket's member was not found at import");
        return NULL;
    }
    return Py_TYPE(descr)->tp_descr_get(descr, sock, (PyObject *)Py_TYPE(sock));
}

static PyObject *
iov_sock_type(PyObject *module, PyObject *sock)
{
    (void)module;
    return read_member(type_descr, sock);
}

static PyObject *
iov_sock_family(PyObject *module, PyObject *sock)
{
    (void)module;
    return read_member(family_descr, sock);
}

/* The member descriptor ``name`` of _socket.socket's own namespace, or NULL. */
static PyObject *
find_int_member(const char *name)
{
    PyObject *descr = PyDict_GetItemString(socket_type->tp_dict, name);
    if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type)
        && ((PyMemberDescrObject *)descr)->d_common.d_type == socket_type
        && ((PyMemberDescrObject *)descr)->d_member->type == T_INT) {
        return Py_NewRef(descr);  /* kept for the life of the process */
    }
    return NULL;
}

PyDoc_STRVAR(marked_closed_doc,
"marked_closed(sock, /) -> bool\n\n"
"``bool(getattr(sock, \"_closed\", False))``: whether close() or detach() was called on the\n"
"socket object. Read straight from its slot for an exact socket.socket.");

/* socket.socket's "_closed" slot (its __slots__ member), found at import; NULL if it is not
 * there as expected, and then marked_closed() asks getattr as the Python code would.
 *
 * Why (issue 11): each post_list / post_message_list / flush batch asks whether the caller
 * closed the socket object (S5.11). getattr(sock, "_closed", False) goes through the type's
 * attribute lookup, the member descriptor and the default's exception handling: about 210
 * instructions a send, callgrind (a twentieth of a posted datagram). This reads the slot. */
static PyMemberDef *closed_member = NULL;
static PyTypeObject *py_socket_type = NULL;
/* And its "_io_refs" slot, found with it (see iov_io_refs_add). */
static PyMemberDef *io_refs_member = NULL;

static PyObject *
iov_marked_closed(PyObject *module, PyObject *sock)
{
    (void)module;
    PyObject *value;
    if (closed_member != NULL && Py_IS_TYPE(sock, py_socket_type)) {
        /* The slot as PyMember_GetOne reads a T_OBJECT_EX member, without its checks: NULL
         * is an unset slot (AttributeError there, False here). close() stores a bool. */
        value = *(PyObject **)((char *)sock + closed_member->offset);
        if (value == Py_True || value == Py_False) {
            return Py_NewRef(value);
        }
        if (value == NULL) {
            Py_RETURN_FALSE;
        }
        Py_INCREF(value);
    }
    else {
        value = PyObject_GetAttrString(sock, "_closed");
    }
    if (value == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return NULL;
        }
        PyErr_Clear();  /* never set (a socket whose __init__ did not run): not closed */
        Py_RETURN_FALSE;
    }
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    if (truth < 0) {
        return NULL;
    }
    return PyBool_FromLong(truth);
}

/* Find socket.socket's "_closed" member (see closed_member). Any surprise leaves it NULL. */
static void
find_closed_member(void)
{
    PyObject *mod = PyImport_ImportModule("socket");
    if (mod == NULL) {
        PyErr_Clear();
        return;
    }
    PyObject *type = PyObject_GetAttrString(mod, "socket");
    Py_DECREF(mod);
    if (type == NULL || !PyType_Check(type)) {
        Py_XDECREF(type);
        PyErr_Clear();
        return;
    }
    /* The descriptor from the class's own namespace, not inherited or shadowed. */
    PyObject *descr = PyDict_GetItemString(((PyTypeObject *)type)->tp_dict, "_closed");
    if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type)
        && ((PyMemberDescrObject *)descr)->d_common.d_type == (PyTypeObject *)type) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX) {
            closed_member = member;
            py_socket_type = (PyTypeObject *)type;  /* kept for the life of the process */
            Py_INCREF(descr);  /* and so is the member it describes */
            PyObject *refs = PyDict_GetItemString(((PyTypeObject *)type)->tp_dict, "_io_refs");
            if (refs != NULL && Py_IS_TYPE(refs, &PyMemberDescr_Type)
                && ((PyMemberDescrObject *)refs)->d_common.d_type == (PyTypeObject *)type
                && ((PyMemberDescrObject *)refs)->d_member->type == T_OBJECT_EX) {
                io_refs_member = ((PyMemberDescrObject *)refs)->d_member;
                Py_INCREF(refs);  /* (the process's life, as above) */
            }
            return;
        }
    }
    Py_DECREF(type);
}

PyDoc_STRVAR(io_refs_add_doc,
"io_refs_add(sock, delta, default, /) -> int\n\n"
"``sock._io_refs = getattr(sock, '_io_refs', default) + delta`` (with a ``delta`` of 0 nothing\n"
"is stored), and the new value. Read and written in socket.socket's slot for an exact\n"
"socket.socket, else through getattr and setattr.");

PyDoc_STRVAR(set_slots_doc,
"set_slots(sock, io_refs, closed, /) -> None\n\n"
"``sock._io_refs = io_refs`` unless it is None, then ``sock._closed = closed`` unless it is\n"
"None: socket.socket's slots written directly for an exact socket.socket, else setattr.");

/* Why (issue 11, workload HC): socket.socket keeps ``_io_refs`` (the count of makefile()
 * objects and of holds like uvloop's, which a close() waits for) and ``_closed`` in slots. A
 * server's connection wrote them twice when made (what __init__ sets), read and wrote the count
 * when its transport started reading through the ErrorWatch and when it let go, and read it and
 * set ``_closed`` when it closed: each a generic attribute lookup through the type's member
 * descriptor, ~160-190 instructions, ~1,400 a connection. These write the slots as the member
 * descriptor does (a T_OBJECT_EX slot: NULL is unset), for exactly the type whose members were
 * found at import (find_closed_member); anything else goes through getattr and setattr. */
static PyObject *io_refs_name = NULL;
static PyObject *closed_name = NULL;

#if PY_VERSION_HEX < 0x030D0000
#define GET_OPTIONAL_ATTR _PyObject_LookupAttr  /* (3.13 names it PyObject_GetOptionalAttr) */
#else
#define GET_OPTIONAL_ATTR PyObject_GetOptionalAttr
#endif

/* (A free-threaded build writes and reads them through setattr and getattr, which take the
 * object's lock: a slot swapped here while another thread swaps it could be freed twice.) */
#ifdef Py_GIL_DISABLED
#define SLOTS_DIRECT(member, sock) 0
#else
#define SLOTS_DIRECT(member, sock) ((member) != NULL && Py_IS_TYPE((sock), py_socket_type))
#endif

/* 0 when a METH_FASTCALL function got exactly ``want`` arguments; else -1 with TypeError. */
static int
exact_args(const char *name, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs == want) {
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
    return -1;
}

static int
store_slot(PyObject *sock, PyMemberDef *member, PyObject *name, PyObject *value)
{
    if (SLOTS_DIRECT(member, sock)) {
        PyObject **slot = (PyObject **)((char *)sock + member->offset);
        Py_XSETREF(*slot, Py_NewRef(value));
        return 0;
    }
    return PyObject_SetAttr(sock, name, value);
}

static PyObject *
iov_io_refs_add(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (exact_args("io_refs_add", nargs, 3) < 0) {
        return NULL;
    }
    PyObject *sock = args[0], *delta = args[1], *dflt = args[2];
    PyObject *value;
    if (SLOTS_DIRECT(io_refs_member, sock)) {
        value = *(PyObject **)((char *)sock + io_refs_member->offset);
        value = Py_NewRef(value != NULL ? value : dflt);
    }
    else if (GET_OPTIONAL_ATTR(sock, io_refs_name, &value) < 0) {
        return NULL;
    }
    else if (value == NULL) {
        value = Py_NewRef(dflt);
    }
    long step = PyLong_AsLong(delta);
    if (step == -1 && PyErr_Occurred()) {
        Py_DECREF(value);
        return NULL;
    }
    if (step == 0) {
        return value;  /* (a read: nothing stored) */
    }
    PyObject *sum = PyNumber_Add(value, delta);
    Py_DECREF(value);
    if (sum == NULL || store_slot(sock, io_refs_member, io_refs_name, sum) < 0) {
        Py_XDECREF(sum);
        return NULL;
    }
    return sum;
}

static PyObject *
iov_set_slots(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (exact_args("set_slots", nargs, 3) < 0) {
        return NULL;
    }
    PyObject *sock = args[0];
    if (args[1] != Py_None && store_slot(sock, io_refs_member, io_refs_name, args[1]) < 0) {
        return NULL;
    }
    if (args[2] != Py_None && store_slot(sock, closed_member, closed_name, args[2]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

#if PY_VERSION_HEX < 0x030C0000
PyDoc_STRVAR(firstiter_self_is_doc,
"firstiter_self_is(obj, /) -> bool\n\n"
"True when this thread's async-generator firstiter hook is a method bound to ``obj``:\n"
"``sys.get_asyncgen_hooks().firstiter.__self__ is obj`` without making the hooks tuple.\n"
"Python 3.11 only (SendEngine.runs_here).");

/* What SendEngine.runs_here asks on Python 3.11 for a loop that keeps no thread id (uvloop):
 * its run_forever installs its own bound method as the thread's firstiter hook while it runs.
 * sys.get_asyncgen_hooks() reads the same field of the thread state, but makes a struct
 * sequence to return it (with two type-dict lookups): about 900 instructions a send in all,
 * callgrind, issue 11. A hook of any other kind answers False, which only makes the caller
 * ask asyncio. 3.12 and later ask asyncio directly (its answer costs no syscall there). */
static PyObject *
iov_firstiter_self_is(PyObject *module, PyObject *obj)
{
    (void)module;
    PyObject *hook = PyThreadState_Get()->async_gen_firstiter;
    if (hook != NULL && PyMethod_Check(hook) && PyMethod_GET_SELF(hook) == obj) {
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}
#endif

PyDoc_STRVAR(support_weakrefs_doc,
"support_weakrefs(cls, /) -> None\n\n"
"Let the instances of ``cls``, a class compiled by mypyc that extends a Python class, be\n"
"weakly referenced, safely (WSATransport: asyncio's transports can be), and give it the\n"
"``__dict__`` and ``__weakref__`` attributes of a Python class. Call it once, before any\n"
"instance exists.");

/* Weak references to a compiled WSATransport (SPEC S10: it behaves as the plain-Python class).
 *
 * mypyc gives a native class that extends a Python class (WSATransport extends
 * asyncio.Transport) a __dict__, and on Python 3.11 a weak reference list as well, but:
 * - its tp_dealloc never calls PyObject_ClearWeakRefs. A weak reference that outlives the
 *   object (freed by its reference count: a protocol that drops its transport in
 *   connection_lost) is left pointing at freed memory. Calling it, or a WeakSet holding it,
 *   crashed the interpreter (tests/transport/test_weakref.py);
 * - from 3.12 on the class has no weak reference list at all (weakref.ref raises TypeError),
 *   which is why _transport stayed plain Python there until this function.
 *
 * What this does, per version:
 * - 3.11: the list mypyc reserved (tp_weaklistoffset, inside tp_basicsize) is kept;
 * - 3.12 and later: mypyc sets Py_TPFLAGS_MANAGED_DICT, whose pre-header holds two pointers,
 *   the dict and the weak reference list (_PyType_PreHeaderSize: two pointers for either flag
 *   of Py_TPFLAGS_PREHEADER). Setting Py_TPFLAGS_MANAGED_WEAKREF and the managed offset (what
 *   PyType_Ready sets for a class that declares the flag, CPython's MANAGED_WEAKREF_OFFSET)
 *   makes that second pointer the list. The layout does not change: no object is bigger;
 * - every version: tp_dealloc becomes weakref_dealloc, which does what CPython's
 *   subtype_dealloc does for a class with a weak reference list: the finalizer first (__del__,
 *   which may resurrect the object: then nothing else happens), then PyObject_ClearWeakRefs
 *   (callbacks run, references die), then mypyc's own tp_dealloc, whose call of the finalizer
 *   is then a no-op (an object is finalized once). A Python subclass's subtype_dealloc ends
 *   in its base's tp_dealloc, this one, so its instances are covered too.
 * The cyclic collector clears weak references by itself before it frees anything; this is
 * about objects freed by their reference count.
 *
 * Two more defects, found by trying to break the above (tests/transport/test_weakref.py):
 * - the weak references' callbacks run inside the dealloc and may start a collection (an
 *   explicit gc.collect(), or any allocation past the threshold). The object was still on the
 *   collector's lists with a reference count of 0, so the collector freed it a second time
 *   (SIGSEGV, every version). weakref_dealloc takes it off the lists first, as subtype_dealloc
 *   does; mypyc's own untrack later is a no-op;
 * - 3.11 only: mypyc's tp_traverse visits, and its tp_clear Py_CLEARs, the weak reference list
 *   as if it owned a reference to it (it does not: the list's first weak reference is
 *   borrowed). The collector then undercounted that weak reference: its callback was dropped
 *   when the only other holder was a running frame, and a weak reference made after the
 *   collector cleared the list (by another garbage object's __del__) was freed under its
 *   holder's feet. weakref_traverse and weakref_clear hide the slot from mypyc's functions.
 *   (On 3.12+ the list is in the managed pre-header, which mypyc's functions do not touch.) */
static destructor weakref_base_dealloc = NULL;
static destructor weakref_base_finalize = NULL;
static PyTypeObject *weakref_type = NULL;
#if PY_VERSION_HEX < 0x030C0000
static traverseproc weakref_base_traverse = NULL;
static inquiry weakref_base_clear = NULL;

/* mypyc's traverse with the weak reference list out of its sight (see above). */
static int
weakref_traverse(PyObject *self, visitproc visit, void *arg)
{
    PyObject **slot = (PyObject **)((char *)self + weakref_type->tp_weaklistoffset);
    PyObject *list = *slot;
    int rv;
    *slot = NULL;
    rv = weakref_base_traverse(self, visit, arg);
    *slot = list;
    return rv;
}

/* mypyc's clear, which must not drop the weak reference list's borrowed pointer. */
static int
weakref_clear(PyObject *self)
{
    PyObject **slot = (PyObject **)((char *)self + weakref_type->tp_weaklistoffset);
    PyObject *list = *slot;
    int rv;
    *slot = NULL;
    rv = weakref_base_clear(self);
    *slot = list;
    return rv;
}
#endif

/* ``obj.__weakref__``: the first weak reference to it, or None (CPython's subtype_getweakref). */
static PyObject *
get_weakref_list(PyObject *self, void *closure)
{
    (void)closure;
    PyObject *first = *(PyObject **)((char *)self + Py_TYPE(self)->tp_weaklistoffset);
    return Py_NewRef(first != NULL ? first : Py_None);
}

/* What a Python class with a __dict__ and weak references shows (SPEC S10): mypyc's class has
 * no __weakref__ attribute on 3.12+, and on 3.11 its __dict__ is a plain member that reads as
 * missing until an attribute outside the class's fields is set (vars(transport) failed). */
/* ``obj.__dict__ = d`` as PyObject_GenericSetDict, and ``del obj.__dict__``, which a Python
 * class allows (the next access makes a new, empty dict) and PyObject_GenericSetDict refuses:
 * the attributes set from outside the class go, as they would from a Python instance. */
static int
set_dict(PyObject *self, PyObject *value, void *closure)
{
    int rv;
    if (value != NULL) {
        return PyObject_GenericSetDict(self, value, closure);
    }
    value = PyDict_New();
    if (value == NULL) {
        return -1;
    }
    rv = PyObject_GenericSetDict(self, value, closure);
    Py_DECREF(value);
    return rv;
}

static PyGetSetDef python_getsets[] = {
    {"__dict__", PyObject_GenericGetDict, set_dict, NULL, NULL},
    {"__weakref__", get_weakref_list, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* The class's tp_finalize: mypyc's, which calls __del__ and nothing else, made to keep the
 * contract of a tp_finalize (CPython's slot_tp_finalize), which it broke two ways:
 * - an error raised by __del__ (a ResourceWarning made an error by the filters: "unclosed
 *   transport") was left set. From a dealloc it was reported by the caller, but the cyclic
 *   collector calls tp_finalize itself (finalize_garbage) and checks nothing: the error stayed
 *   set through the rest of the collection, the other finalizers ran with it, and the next
 *   tp_clear that delete_garbage called was blamed for it ("Exception ignored in tp_clear of
 *   <class ...>"). It is reported here, with the object alive (CallFinalizerFromDealloc and
 *   the collector both keep it alive for the call; a hook that keeps a reference resurrects
 *   it, as for any class), and the caller's current exception is kept;
 * - during interpreter finalization __del__ ran compiled code after the modules were freed:
 *   mypyc's module globals (CPyStatic_..._globals) are borrowed pointers to the dict of a
 *   module that _PyInterpreterState_ClearModules has freed by the last collection of
 *   finalize_modules. A transport still in a cycle then (after loop.close() with a write
 *   pending: the engine's _keep) read the freed dict (a TypeError "frozenset object
 *   expected; got None" from __repr__, or a crash), and the traceback of that error held a
 *   frame whose globals were that freed dict: freeing it freed the dict a second time
 *   (SIGSEGV at exit). So __del__ is not called once the interpreter is finalizing: it only
 *   warns (no warning can be shown by then), closes the socket (the socket's own finalizer
 *   does) and detaches from a server (nobody waits by then). */
static void
weakref_finalize(PyObject *self)
{
    PyObject *type, *value, *traceback;
#if PY_VERSION_HEX >= 0x030D0000
    if (Py_IsFinalizing()) {
#else
    if (_Py_IsFinalizing()) {
#endif
        return;
    }
    PyErr_Fetch(&type, &value, &traceback);
    weakref_base_finalize(self);
    if (PyErr_Occurred() != NULL) {
        PyErr_WriteUnraisable(self);
    }
    PyErr_Restore(type, value, traceback);
}

static void
weakref_dealloc(PyObject *self)
{
    /* The finalizer first, as subtype_dealloc (weakref_finalize reports its errors itself). */
    if (Py_TYPE(self)->tp_finalize != NULL && PyObject_CallFinalizerFromDealloc(self) < 0) {
        return;  /* resurrected */
    }
    PyObject_GC_UnTrack(self);  /* before the callbacks can start a collection (see above) */
    PyObject_ClearWeakRefs(self);
    weakref_base_dealloc(self);
}

/* ``arg`` as a class of the kind mypyc makes (a heap type with the collector's support and
 * fixed-size instances), else NULL with a TypeError that names ``caller``. */
static PyTypeObject *
compiled_class(PyObject *arg, const char *caller)
{
    PyTypeObject *tp;
    if (!PyType_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "%s() needs a class", caller);
        return NULL;
    }
    tp = (PyTypeObject *)arg;
    if (!PyType_HasFeature(tp, Py_TPFLAGS_HEAPTYPE) || !PyType_HasFeature(tp, Py_TPFLAGS_HAVE_GC)
        || tp->tp_dealloc == NULL || tp->tp_itemsize != 0) {
        PyErr_Format(PyExc_TypeError, "%s(): %s is not a compiled class of the expected kind", caller,
                     tp->tp_name);
        return NULL;
    }
    return tp;
}

static PyObject *
iov_support_weakrefs(PyObject *module, PyObject *arg)
{
    (void)module;
    PyTypeObject *tp = compiled_class(arg, "support_weakrefs");
    if (tp == NULL) {
        return NULL;
    }
    if (weakref_type != NULL) {
        if (tp == weakref_type) {
            Py_RETURN_NONE;
        }
        PyErr_SetString(PyExc_RuntimeError, "support_weakrefs() serves one class");
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
#ifdef Py_GIL_DISABLED
    PyErr_SetString(PyExc_RuntimeError, "support_weakrefs(): not for a free-threaded build");
    return NULL;
#else
    if (tp->tp_weaklistoffset == 0) {
        if (!PyType_HasFeature(tp, Py_TPFLAGS_MANAGED_DICT)) {
            PyErr_Format(PyExc_RuntimeError, "support_weakrefs(): %s has no managed dict",
                         tp->tp_name);
            return NULL;
        }
        tp->tp_flags |= Py_TPFLAGS_MANAGED_WEAKREF;
        tp->tp_weaklistoffset = -4 * (Py_ssize_t)sizeof(PyObject *);  /* MANAGED_WEAKREF_OFFSET */
    }
    /* (Else a later mypyc gave the class weak references itself: only the dealloc is wrapped,
     * and a second PyObject_ClearWeakRefs, in its own dealloc, finds nothing left to clear.) */
#endif
#else
    if (tp->tp_weaklistoffset <= 0
        || tp->tp_weaklistoffset + (Py_ssize_t)sizeof(PyObject *) > tp->tp_basicsize) {
        PyErr_Format(PyExc_RuntimeError, "support_weakrefs(): %s has no weak reference list",
                     tp->tp_name);
        return NULL;
    }
    if (tp->tp_traverse == NULL || tp->tp_clear == NULL) {
        PyErr_Format(PyExc_RuntimeError, "support_weakrefs(): %s has no traverse or clear", tp->tp_name);
        return NULL;
    }
#endif
    for (PyGetSetDef *def = python_getsets; def->name != NULL; def++) {
        PyObject *descr = PyDescr_NewGetSet(tp, def);
        if (descr == NULL || PyDict_SetItemString(tp->tp_dict, def->name, descr) < 0) {
            Py_XDECREF(descr);
            return NULL;
        }
        Py_DECREF(descr);
    }
#if PY_VERSION_HEX < 0x030C0000
    weakref_base_traverse = tp->tp_traverse;
    tp->tp_traverse = weakref_traverse;
    weakref_base_clear = tp->tp_clear;
    tp->tp_clear = weakref_clear;
#endif
    weakref_base_dealloc = tp->tp_dealloc;
    tp->tp_dealloc = weakref_dealloc;
    if (tp->tp_finalize != NULL) {
        weakref_base_finalize = tp->tp_finalize;
        tp->tp_finalize = weakref_finalize;
    }
    Py_INCREF(tp);
    weakref_type = tp;  /* kept for the life of the process */
    PyType_Modified(tp);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(no_weakrefs_doc,
"no_weakrefs(cls, /) -> None\n\n"
"Refuse weak references to the instances of ``cls``, a class compiled by mypyc that extends a\n"
"Python class and needs none (``_queue.SendQueue``), as it is refused from Python 3.12 on.\n"
"Call it once, before any instance exists.");

/* On Python 3.11 mypyc gives such a class (SendQueue extends typing.Generic) a weak reference
 * list that its tp_dealloc never clears (see support_weakrefs): a weak reference outliving an
 * instance freed by its reference count pointed at freed memory, and using it crashed the
 * interpreter (tests/core/test_queue_weakref.py). A class that nothing needs to reference
 * weakly loses the list instead: weakref.ref() then raises TypeError, as it does on 3.12+ where
 * mypyc reserves none. The slot stays in the layout, unused. A no-op on 3.12+. */
static PyObject *
iov_no_weakrefs(PyObject *module, PyObject *arg)
{
    (void)module;
    PyTypeObject *tp = compiled_class(arg, "no_weakrefs");
    if (tp == NULL) {
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (tp->tp_weaklistoffset != 0) {
        /* (type's own __subclasses__, not one the class may define: review, stop 51) */
        PyObject *subclasses = PyObject_CallMethod((PyObject *)&PyType_Type, "__subclasses__", "O", arg);
        Py_ssize_t count;
        if (subclasses == NULL) {
            return NULL;
        }
        count = PyObject_Size(subclasses);
        Py_DECREF(subclasses);
        if (count < 0) {
            return NULL;
        }
        if (count != 0) {  /* they copied the offset when they were made */
            PyErr_Format(PyExc_RuntimeError, "no_weakrefs(): %s already has subclasses", tp->tp_name);
            return NULL;
        }
        if (PyDict_GetItemString(tp->tp_dict, "__weakref__") != NULL
            && PyDict_DelItemString(tp->tp_dict, "__weakref__") < 0) {
            return NULL;
        }
        tp->tp_weaklistoffset = 0;
        PyType_Modified(tp);
    }
#endif
    Py_RETURN_NONE;
}

PyDoc_STRVAR(keep_alive_doc,
"keep_alive(obj, /) -> None\n\n"
"Keep a reference to ``obj`` for the life of the process (the compiled modules).");

/* mypyc's compiled code reads its module's globals through a C pointer to the module's dict
 * (CPyStatic_<module>___globals) that owns no reference: the module is owned by sys.modules
 * and the interpreter's list of extension modules. At exit, _PyInterpreterState_ClearModules
 * drops that list, which freed the modules and their dicts before finalize_modules' last
 * collection; any compiled code that the collection ran then (a finalizer, a Python __del__
 * calling a transport's method) read freed memory, and an error it raised carried a frame
 * whose globals were that dict, freed a second time with it (SIGSEGV). Kept alive, the dicts
 * stay valid to the end (their values None by then: errors, reported, not crashes). */
static PyObject *
iov_keep_alive(PyObject *module, PyObject *obj)
{
    (void)module;
    Py_INCREF(obj);  /* never released */
    Py_RETURN_NONE;
}

/* -- rlock(): the registry's reentrant lock ---------------------------------------------------
 *
 * threading.RLock's acquire() parses its (blocking, timeout) arguments with
 * PyArg_ParseTupleAndKeywords on every call, even with none given, and converts the timeout:
 * about 430 instructions a call on Python 3.11 (callgrind, issue 11). A server's connection
 * takes the registry lock seven times (its slot, its engine, the transport's mark and unmark,
 * its close, the wake after it, the slot's end): ~3,000 instructions of every connection. This
 * lock is the same lock without the parsing: acquire() with no argument (or __enter__) takes
 * the fast path.
 *
 * Its owner and count are guarded by the GIL (this module is loaded only where the GIL guards
 * them: a free-threaded build uses threading's lock, see rlock() below), so a lock nobody else
 * holds is taken and let go without any call to the system's lock: a try of the underlying lock
 * cost ~90 instructions and its release ~30 (PyThread_acquire_lock_timed reads the monotonic
 * clock for a deadline even when it does not wait), ~1,000 of every connection a server accepts
 * (callgrind, issue 11, workload HC1). The underlying lock serves only the waits: it rests
 * taken, and a thread that finds the lock held waits on it with the GIL released (``waiters``
 * counts them). A release that frees the lock while someone waits hands it over: it lets the
 * underlying lock go once and sets ``handoff``, and from then until a waiter takes that wake
 * (its wait succeeds, without the GIL) the lock is that waiter's, which nobody else can take
 * by the fast path. So a thread that lets go and at once asks again (a loop around ``with
 * lock:``) queues behind the waiter instead of taking the lock back before the woken waiter
 * gets the GIL, and at most one wake is outstanding at a time. (Stop 51's review: without the
 * hand-off a waiter could starve for as long as two other threads took turns, and the wakes
 * nobody took piled up in the underlying semaphore, millions a second, each a spin of a later
 * wait.) A wake that its waiter no longer wants (it timed out, or a signal handler raised) is
 * taken by the next thread that asks, blocking or not.
 *
 * A wait in acquire() lets signal handlers run, as threading's does: one that raises (Ctrl-C's
 * KeyboardInterrupt) ends the wait with the lock not taken (before stop 51 the wait went on to
 * take the lock and the handler ran after acquire() returned, before the caller's ``try:``, so
 * the lock stayed held for good). _acquire_restore (threading.Condition's) waits through
 * signals, as threading's does. Differences from threading.RLock, none of which the registry
 * needs: acquire() takes ``blocking`` and ``timeout`` as threading's does, but rejects values
 * threading would convert (only bool/int and float/int). It has what threading.Condition uses
 * of a lock (_is_owned, _release_save, _acquire_restore), so OWNERSHIP.changed works on it as
 * on an RLock. */

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;  /* taken at rest; let go only to hand the lock over (see above) */
    unsigned long owner;  /* PyThread_get_thread_ident() of the holder, 0 when free */
    unsigned long count;  /* 0 when free */
    unsigned long waiters;  /* threads waiting in rlock_take */
    int handoff;  /* the underlying lock was let go for a waiter, which has not taken it yet */
} rlock_object;

static PyTypeObject rlock_type;

/* Microseconds on the monotonic clock. */
static long long
monotonic_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000LL + now.tv_nsec / 1000;
}

/* With the GIL held: take a wake that was handed over and not taken yet (its waiter gave up, or
 * has yet to wait); 1 when taken, which makes the lock the caller's. */
static int
rlock_take_handoff(rlock_object *self)
{
    if (self->handoff && self->count == 0 && PyThread_acquire_lock(self->lock, NOWAIT_LOCK) == PY_LOCK_ACQUIRED) {
        self->handoff = 0;
        return 1;
    }
    return 0;
}

/* With the GIL held, by a thread that does not hold the lock and cannot take it by the fast
 * path (it is held, or handed over to a waiter): 1 when the lock is the caller's to take (now,
 * or within ``microseconds``; -1: however long it takes), 0 when it is not, -1 with an
 * exception set when a signal handler raised (``intr``: the wait lets signal handlers run, as
 * threading's does; without it the wait goes on through signals). The GIL is released while
 * waiting. */
static int
rlock_take(rlock_object *self, PY_TIMEOUT_T microseconds, int intr)
{
    if (rlock_take_handoff(self)) {
        return 1;
    }
    if (microseconds == 0) {
        return 0;
    }
    long long deadline = microseconds > 0 ? monotonic_us() + (long long)microseconds : 0;
    PY_TIMEOUT_T wait = microseconds;
    self->waiters++;
    for (;;) {
        PyLockStatus got;
        Py_BEGIN_ALLOW_THREADS
        got = PyThread_acquire_lock_timed(self->lock, wait, intr);
        Py_END_ALLOW_THREADS
        if (got == PY_LOCK_ACQUIRED) {
            /* The wake of a release (handoff set, the lock free since, nobody could take it). */
            self->waiters--;
            self->handoff = 0;
            return 1;
        }
        if (got == PY_LOCK_INTR && Py_MakePendingCalls() < 0) {
            self->waiters--;  /* (a wake handed over meanwhile is left for the next to ask) */
            return -1;
        }
        if (microseconds > 0) {
            long long left = deadline - monotonic_us();
            if (left <= 0) {
                self->waiters--;
                return rlock_take_handoff(self);  /* (handed over as it timed out: taken) */
            }
            wait = (PY_TIMEOUT_T)left;
        }
    }
}

/* With the GIL held: the lock is free now (count 0); hand it over if someone waits and no wake
 * is outstanding already. */
static void
rlock_freed(rlock_object *self)
{
    self->owner = 0;
    if (self->waiters > 0 && !self->handoff) {
        self->handoff = 1;
        PyThread_release_lock(self->lock);
    }
}

/* acquire() once its arguments are known: the holder counts one more; anyone else takes the
 * lock if it is free and not handed over, or once it is theirs within ``microseconds`` (see
 * rlock_take). True or False, NULL with an exception (overflow, a signal handler's). */
static PyObject *
rlock_lock(rlock_object *self, PY_TIMEOUT_T microseconds)
{
    unsigned long me = PyThread_get_thread_ident();
    if (self->count > 0 && self->owner == me) {
        if (self->count == ULONG_MAX) {
            PyErr_SetString(PyExc_OverflowError, "internal lock count overflowed");
            return NULL;
        }
        self->count++;
        Py_RETURN_TRUE;
    }
    if (self->count > 0 || self->handoff) {
        int taken = rlock_take(self, microseconds, 1);
        if (taken < 0) {
            return NULL;
        }
        if (!taken) {
            Py_RETURN_FALSE;
        }
    }
    self->owner = me;
    self->count = 1;
    Py_RETURN_TRUE;
}

static PyObject *
rlock_enter(rlock_object *self, PyObject *unused)
{
    (void)unused;
    return rlock_lock(self, -1);
}

static PyObject *
rlock_acquire(rlock_object *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) {
        return rlock_lock(self, -1);
    }
    PyObject *blocking_obj = NULL, *timeout_obj = NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "acquire() takes at most 2 arguments");
        return NULL;
    }
    if (nargs > 0) {
        blocking_obj = args[0];
    }
    if (nargs > 1) {
        timeout_obj = args[1];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        PyObject **slot;
        if (PyUnicode_CompareWithASCIIString(name, "blocking") == 0) {
            slot = &blocking_obj;
        }
        else if (PyUnicode_CompareWithASCIIString(name, "timeout") == 0) {
            slot = &timeout_obj;
        }
        else {
            PyErr_Format(PyExc_TypeError, "acquire() got an unexpected keyword argument '%U'", name);
            return NULL;
        }
        if (*slot != NULL) {
            PyErr_Format(PyExc_TypeError, "acquire() got multiple values for argument '%U'", name);
            return NULL;
        }
        *slot = args[nargs + i];
    }
    int blocking = 1;
    if (blocking_obj != NULL) {
        if (!PyLong_Check(blocking_obj)) {
            PyErr_SetString(PyExc_TypeError, "blocking must be a bool or an int");
            return NULL;
        }
        blocking = PyObject_IsTrue(blocking_obj);
    }
    double timeout = -1.0;
    if (timeout_obj != NULL) {
        if (!PyFloat_Check(timeout_obj) && !PyLong_Check(timeout_obj)) {
            PyErr_SetString(PyExc_TypeError, "timeout must be a float or an int");
            return NULL;
        }
        timeout = PyFloat_AsDouble(timeout_obj);
        if (timeout == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (!blocking && timeout != -1.0) {
        PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
        return NULL;
    }
    if (Py_IS_NAN(timeout)) {
        /* (it compares false with everything: it waited for good, review of stop 51) */
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return NULL;
    }
    if (timeout < 0 && timeout != -1.0) {
        PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
        return NULL;
    }
    PY_TIMEOUT_T microseconds = -1;
    if (!blocking) {
        microseconds = 0;
    }
    else if (timeout >= 0) {
        double us = timeout * 1e6;
        if (us > (double)PY_TIMEOUT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
            return NULL;
        }
        microseconds = (PY_TIMEOUT_T)us;
    }
    return rlock_lock(self, microseconds);
}

static PyObject *
rlock_release(rlock_object *self, PyObject *unused)
{
    (void)unused;
    if (self->count == 0 || self->owner != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    if (--self->count == 0) {
        rlock_freed(self);
    }
    Py_RETURN_NONE;
}

static PyObject *
rlock_exit(rlock_object *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    return rlock_release(self, NULL);
}

static PyObject *
rlock_is_owned(rlock_object *self, PyObject *unused)
{
    (void)unused;
    return PyBool_FromLong(self->count > 0 && self->owner == PyThread_get_thread_ident());
}

static PyObject *
rlock_release_save(rlock_object *self, PyObject *unused)
{
    (void)unused;
    if (self->count == 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    unsigned long count = self->count, owner = self->owner;
    self->count = 0;
    rlock_freed(self);
    return Py_BuildValue("(kk)", count, owner);
}

static PyObject *
rlock_acquire_restore(rlock_object *self, PyObject *state)
{
    unsigned long count, owner;
    if (!PyArg_ParseTuple(state, "kk:_acquire_restore", &count, &owner)) {
        return NULL;
    }
    if (self->count > 0 || self->handoff) {
        /* (as threading's: not interrupted by signals; waits for good, so it returns 1) */
        (void)rlock_take(self, -1, 0);
    }
    self->owner = owner;
    self->count = count;
    Py_RETURN_NONE;
}

/* The underlying lock of a new rlock, taken (its resting state, see above); NULL with
 * MemoryError set. */
static PyThread_type_lock
rlock_new_lock(void)
{
    PyThread_type_lock lock = PyThread_allocate_lock();
    if (lock == NULL) {
        PyErr_SetString(PyExc_MemoryError, "cannot allocate lock");
        return NULL;
    }
    (void)PyThread_acquire_lock(lock, NOWAIT_LOCK);  /* (new: free, so taken at once) */
    return lock;
}

static PyObject *
rlock_at_fork_reinit(rlock_object *self, PyObject *unused)
{
    (void)unused;
    PyThread_type_lock lock = rlock_new_lock();
    if (lock == NULL) {
        return NULL;
    }
    /* (the old lock may be waited on by threads that do not exist in this process: dropped, as
     * CPython's _at_fork_reinit drops it) */
    self->lock = lock;
    self->owner = 0;
    self->count = 0;
    self->waiters = 0;
    self->handoff = 0;
    Py_RETURN_NONE;
}

static PyObject *
rlock_repr(rlock_object *self)
{
    return PyUnicode_FromFormat("<%s %s object owner=%lu count=%lu at %p>",
                                self->count ? "locked" : "unlocked", Py_TYPE(self)->tp_name,
                                self->owner, self->count, (void *)self);
}

static void
rlock_dealloc(rlock_object *self)
{
    if (self->lock != NULL) {
        PyThread_free_lock(self->lock);  /* (nobody waits: a waiter holds a reference) */
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef rlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))rlock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool\n\nAs threading.RLock.acquire."},
    {"release", (PyCFunction)rlock_release, METH_NOARGS, "release() -> None\n\nAs threading.RLock.release."},
    {"__enter__", (PyCFunction)rlock_enter, METH_NOARGS, "acquire() -> True"},
    {"__exit__", (PyCFunction)(void (*)(void))rlock_exit, METH_FASTCALL, "release()"},
    {"_is_owned", (PyCFunction)rlock_is_owned, METH_NOARGS, NULL},
    {"_release_save", (PyCFunction)rlock_release_save, METH_NOARGS, NULL},
    {"_acquire_restore", (PyCFunction)rlock_acquire_restore, METH_O, NULL},
    {"_at_fork_reinit", (PyCFunction)rlock_at_fork_reinit, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject rlock_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wsasend._iovsend.RLock",
    .tp_basicsize = sizeof(rlock_object),
    .tp_dealloc = (destructor)rlock_dealloc,
    .tp_repr = (reprfunc)rlock_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The registry's reentrant lock (see rlock()).",
    .tp_methods = rlock_methods,
};

PyDoc_STRVAR(rlock_doc,
"rlock() -> RLock\n\n"
"A new reentrant lock: threading.RLock's behaviour and methods (threading.Condition works on\n"
"it), with an acquire() that does not parse arguments when given none.");

static PyObject *
iov_rlock(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    rlock_object *self = PyObject_New(rlock_object, &rlock_type);
    if (self == NULL) {
        return NULL;
    }
    self->owner = 0;
    self->count = 0;
    self->waiters = 0;
    self->handoff = 0;
    self->lock = rlock_new_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* ``await`` of a send that is already complete (WSAOverlapped.__await__ on 3.11, S5.3): an iterator
 * that returns its value at once. A plain-Python generator did this before (issue 11: ~800 of a
 * 3,500-instruction ``await wsa_send(...)`` on uvloop, for making a generator and running its
 * frame). Python 3.11's SEND opcode takes am_send (a return with no StopIteration made); 3.12's
 * calls tp_iternext, which must raise StopIteration(value), as asyncio's FutureIter does: made
 * anew each time that cost more than the generator, so 3.12+ raise one kept instance while
 * nobody else holds it (see done_raise). It behaves
 * as a generator that returns at once: send() of a non-None value to it first is a TypeError,
 * and once it has returned its value every later step ends it again with nothing. */
typedef struct {
    PyObject_HEAD
    PyObject *value;  /* NULL once returned, thrown into or closed */
} done_object;

static PyTypeObject done_type, done_gc_type;

static void
done_dealloc(done_object *self)
{
    Py_XDECREF(self->value);
    PyObject_Free(self);
}

/* The same iterator for a value of a type the collector knows (done() with a container or an
 * exception: never ``await`` of a send, whose value is an int). Such a value can refer back to
 * its iterator, and a cycle through an object the collector cannot see is never freed (review,
 * stop 51); an int, the await's value, keeps the plain type and its cheaper allocation. */
static int
done_gc_traverse(done_object *self, visitproc visit, void *arg)
{
    Py_VISIT(self->value);
    return 0;
}

static int
done_gc_clear(done_object *self)
{
    Py_CLEAR(self->value);
    return 0;
}

static void
done_gc_dealloc(done_object *self)
{
    PyObject_GC_UnTrack(self);
    Py_XDECREF(self->value);
    PyObject_GC_Del(self);
}

#if PY_VERSION_HEX < 0x030C0000
/* StopIteration carrying ``value`` as the result (a tuple or an exception made its argument,
 * as CPython's generators do, so that it is not taken for the arguments). */
static void
done_stop(PyObject *value)
{
    if (PyTuple_Check(value) || PyExceptionInstance_Check(value)) {
        PyObject *exc = PyObject_CallOneArg(PyExc_StopIteration, value);
        if (exc != NULL) {
            PyErr_SetObject(PyExc_StopIteration, exc);
            Py_DECREF(exc);
        }
        return;
    }
    PyErr_SetObject(PyExc_StopIteration, value);
}
#endif

static int
done_check_arg(done_object *self, PyObject *arg)
{
    if (self->value != NULL && arg != NULL && arg != Py_None) {
        PyErr_SetString(PyExc_TypeError, "can't send non-None value to a just-started generator");
        return -1;
    }
    return 0;
}

static PySendResult
done_am_send(PyObject *op, PyObject *arg, PyObject **result)
{
    done_object *self = (done_object *)op;
    if (done_check_arg(self, arg) < 0) {
        *result = NULL;
        return PYGEN_ERROR;
    }
    if (self->value == NULL) {
        *result = Py_NewRef(Py_None);  /* as an exhausted generator's am_send */
        return PYGEN_RETURN;
    }
    *result = self->value;  /* the reference moves to the caller */
    self->value = NULL;
    return PYGEN_RETURN;
}

#if PY_VERSION_HEX >= 0x030C0000
/* Python 3.12+: the StopIteration that done_iternext raised last, kept for the next one. 3.12's
 * SEND opcode calls tp_iternext, takes the exception back at once (_PyGen_FetchStopIterationValue
 * reads its ``value`` and drops it) and so leaves it with our reference only, as it was: making
 * one per ``await`` (the class called, its arguments parsed, PyErr_SetObject's normalization)
 * cost more than the generator it replaces (issue 11). Used again only while nobody else holds
 * it and nothing was attached to it (a traceback, a context or cause, notes, a __dict__: it
 * went through Python code, e.g. a ``next()`` of the iterator caught in a frame); else a new
 * one. Raised with PyErr_SetRaisedException, which chains no context (PyErr_SetObject would
 * make the exception being handled its __context__: kept alive until the next await). One
 * that went through Python code keeps what it picked up there (a traceback and so the frames
 * it passed and their locals, a context) until the next raise here replaces it: a frame's
 * worth kept a while longer, never a wrong value (review, stop 51; nothing tells this module
 * when a frame attaches a traceback, and a check on a timer would cost every loop). */
static PyObject *done_stop_cached = NULL;

static int
done_stop_pristine(PyObject *exc)
{
    PyBaseExceptionObject *base = (PyBaseExceptionObject *)exc;
    return Py_REFCNT(exc) == 1 && base->dict == NULL && base->notes == NULL && base->traceback == NULL
           && base->context == NULL && base->cause == NULL && !base->suppress_context;
}

/* Raise StopIteration(value): the kept instance with its value and args set, or a new one. */
static void
done_raise(PyObject *value)
{
    if (value == Py_None) {
        PyErr_SetNone(PyExc_StopIteration);  /* (a generator's ``return None``: no arguments) */
        return;
    }
    PyObject *exc = done_stop_cached;
    if (exc != NULL && done_stop_pristine(exc)) {
        /* Held from here on: an old value or args tuple let go of below may run code (a
         * __del__) that comes through here again, and that call must then make its own. */
        Py_INCREF(exc);
        PyObject *args = ((PyBaseExceptionObject *)exc)->args;
        if (args != NULL && PyTuple_CheckExact(args) && PyTuple_GET_SIZE(args) == 1 && Py_REFCNT(args) == 1
            && PyLong_CheckExact(value)) {
            /* Its own one-item tuple, held by nobody else, given the new count in place (as
             * CPython's zip and enumerate reuse their result tuples); an int only, which the
             * collector need not see, so the tuple's tracking does not matter. */
            Py_SETREF(PyTuple_GET_ITEM(args, 0), Py_NewRef(value));
        }
        else {
            args = PyTuple_Pack(1, value);
            if (args == NULL) {
                Py_DECREF(exc);
                return;
            }
            Py_SETREF(((PyBaseExceptionObject *)exc)->args, args);
        }
        Py_XSETREF(((PyStopIterationObject *)exc)->value, Py_NewRef(value));
    }
    else {
        /* (The constructor takes one argument as the value, a tuple too.) */
        exc = PyObject_CallOneArg(PyExc_StopIteration, value);
        if (exc == NULL) {
            return;
        }
        Py_XSETREF(done_stop_cached, Py_NewRef(exc));
    }
    PyErr_SetRaisedException(exc);  /* (takes the reference held here) */
}
#else
#define done_raise done_stop
#endif

static PyObject *
done_iternext(done_object *self)
{
    PyObject *value = self->value;
    if (value == NULL) {
        return NULL;  /* exhausted: StopIteration without a value */
    }
    self->value = NULL;
    done_raise(value);
    Py_DECREF(value);
    return NULL;
}

static PyObject *
done_send(done_object *self, PyObject *arg)
{
    if (done_check_arg(self, arg) < 0) {
        return NULL;
    }
    if (self->value == NULL) {
        PyErr_SetNone(PyExc_StopIteration);
        return NULL;
    }
    return done_iternext(self);
}

/* Attach ``tb`` to the exception being raised (throw()'s third argument). */
static void
done_set_traceback(PyObject *tb)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    if (exc != NULL) {
        (void)PyException_SetTraceback(exc, tb);  /* (tb is a traceback: cannot fail) */
    }
    PyErr_SetRaisedException(exc);
#else
    PyObject *typ, *val, *old;
    PyErr_Fetch(&typ, &val, &old);
    PyErr_NormalizeException(&typ, &val, &old);
    if (val != NULL) {
        (void)PyException_SetTraceback(val, tb);
    }
    Py_XSETREF(old, Py_NewRef(tb));
    PyErr_Restore(typ, val, old);
#endif
}

static PyObject *
done_throw(done_object *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* Thrown into before it started (or after it ended), a generator raises what was thrown
     * and is done; a bad argument is a TypeError that leaves it as it was. The checks and
     * messages are those of CPython's generator throw(). */
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (nargs > 1 && PyErr_WarnEx(PyExc_DeprecationWarning,
                                  "the (type, exc, tb) signature of throw() is deprecated, "
                                  "use the single-arg signature instead.",
                                  1) < 0) {
        return NULL;  /* (as a generator's, 3.12+: the warning first, an error if it is one) */
    }
#endif
    PyObject *typ = args[0];
    PyObject *val = nargs > 1 ? args[1] : NULL;
    PyObject *tb = nargs > 2 ? args[2] : NULL;
    if (tb == Py_None) {
        tb = NULL;
    }
    else if (tb != NULL && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError, "throw() third argument must be a traceback object");
        return NULL;
    }
    int instance = PyExceptionInstance_Check(typ);
    if (instance) {
        if (val != NULL && val != Py_None) {
            PyErr_SetString(PyExc_TypeError, "instance exception may not have a separate value");
            return NULL;
        }
    }
    else if (!PyExceptionClass_Check(typ)) {
        PyErr_Format(PyExc_TypeError, "exceptions must be classes or instances deriving from BaseException, not %s",
                     Py_TYPE(typ)->tp_name);
        return NULL;
    }
    /* Ended before the exception is set: letting go of the value may run code (a __del__). */
    Py_CLEAR(self->value);
    if (instance) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    }
    else {
        PyErr_SetObject(typ, val);
    }
    if (tb != NULL) {
        done_set_traceback(tb);
    }
#if PY_VERSION_HEX < 0x030C0000
    /* Python 3.11 runs a just-started generator's frame to raise it there, and PEP 479 turns a
     * StopIteration leaving a generator into RuntimeError (3.12+ raise it without the frame). */
    if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        _PyErr_FormatFromCause(PyExc_RuntimeError, "generator raised StopIteration");
    }
#endif
    return NULL;
}

static PyObject *
done_close(done_object *self, PyObject *unused)
{
    (void)unused;
    Py_CLEAR(self->value);
    Py_RETURN_NONE;
}

static PyMethodDef done_methods[] = {
    {"send", (PyCFunction)done_send, METH_O, "send(value): returns the result (StopIteration)."},
    {"throw", (PyCFunction)(void (*)(void))done_throw, METH_FASTCALL, "throw(exc): raises exc."},
    {"close", (PyCFunction)done_close, METH_NOARGS, "close(): ends it."},
    {NULL, NULL, 0, NULL},
};

static PyAsyncMethods done_as_async = {
    .am_send = done_am_send,
};

static PyTypeObject done_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wsasend._iovsend.Done",
    .tp_basicsize = sizeof(done_object),
    .tp_dealloc = (destructor)done_dealloc,
    .tp_as_async = &done_as_async,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "What ``await`` of a completed send iterates (see done()).",
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)done_iternext,
    .tp_methods = done_methods,
};

static PyTypeObject done_gc_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wsasend._iovsend.DoneGC",
    .tp_basicsize = sizeof(done_object),
    .tp_dealloc = (destructor)done_gc_dealloc,
    .tp_as_async = &done_as_async,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "done()'s iterator for a value the garbage collector tracks (see done_gc_traverse).",
    .tp_traverse = (traverseproc)done_gc_traverse,
    .tp_clear = (inquiry)done_gc_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)done_iternext,
    .tp_methods = done_methods,
};

PyDoc_STRVAR(done_doc,
"done(value, /) -> Done\n\n"
"An iterator that returns ``value`` at once, without suspending: what ``__await__`` of a\n"
"completed send gives (no generator made and run for it).");

static PyObject *
iov_done(PyObject *module, PyObject *value)
{
    (void)module;
    if (PyObject_IS_GC(value)) {
        done_object *self = PyObject_GC_New(done_object, &done_gc_type);
        if (self == NULL) {
            return NULL;
        }
        self->value = Py_NewRef(value);
        PyObject_GC_Track(self);
        return (PyObject *)self;
    }
    done_object *self = PyObject_New(done_object, &done_type);
    if (self == NULL) {
        return NULL;
    }
    self->value = Py_NewRef(value);
    return (PyObject *)self;
}

PyDoc_STRVAR(watch_poll_doc,
"watch_poll(epfd, owners, /) -> None\n\n"
"ErrorWatch._ready's poll and dispatch: ``epoll_wait`` of the watch's epoll without waiting,\n"
"then ``owner._watch_event(events)`` for each descriptor reported whose ``owners[fd]`` (a weak\n"
"reference) is alive. OSError from epoll_wait; an exception raised by a call propagates at\n"
"once, as from the Python loop it replaces.");

/* Up to this many reports per call; more stay on epoll's ready list for the next call (the
 * watch's descriptor stays readable while any are there, so the loop calls again). */
#define WATCH_BATCH 256

static PyObject *watch_event_name = NULL;

/* ErrorWatch._ready (issue 11: uvloop transports read through the watch, so this runs once
 * per wake-up of the loop with a socket ready). select.epoll.poll() parses a float timeout,
 * mallocs an array for FD_SETSIZE events, releases and takes back the GIL around a call that
 * cannot block, and builds a list of tuples; with the dispatch, ~2,600 instructions of a
 * request with one client. Here: a stack array, the GIL kept (timeout 0, as recv in this
 * module), and each owner called directly. The owners dict and each owner are held across
 * the calls, which may close transports and so change the dict. */
/* The live owner of descriptor ``fd`` in ``owners`` (number -> weak reference): 1 and a new
 * reference in *owner, 0 when there is none (not listed, or collected), -1 with an exception. */
static int
watched_owner(PyObject *owners, int fd, PyObject **owner)
{
    PyObject *key = PyLong_FromLong((long)fd);
    if (key == NULL) {
        return -1;
    }
    PyObject *ref;
#if PY_VERSION_HEX >= 0x030D0000
    int found = PyDict_GetItemRef(owners, key, &ref);
    Py_DECREF(key);
    if (found <= 0) {
        return found;
    }
    int alive = PyWeakref_GetRef(ref, owner);
    Py_DECREF(ref);
    return alive;
#else
    ref = PyDict_GetItemWithError(owners, key);  /* (borrowed: nothing runs before its use) */
    Py_DECREF(key);
    if (ref == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (!PyWeakref_Check(ref)) {  /* (3.13's PyWeakref_GetRef says the same; 3.11's a SystemError) */
        PyErr_SetString(PyExc_TypeError, "expected a weakref");
        return -1;
    }
    PyObject *target = PyWeakref_GetObject(ref);  /* (borrowed) */
    if (target == NULL) {
        return -1;
    }
    if (target == Py_None) {
        return 0;
    }
    Py_INCREF(target);
    *owner = target;
    return 1;
#endif
}

PyDoc_STRVAR(epoll_ctl_doc,
"epoll_ctl(epfd, op, fd, events, /) -> None\n\n"
"epoll_ctl(2) on the epoll instance ``epfd`` for the descriptor ``fd`` (``op``: 1 add,\n"
"2 delete, 3 modify; the event's data is ``fd``, as select.epoll's register, unregister and\n"
"modify make it). Raises OSError as they do (FileExistsError, FileNotFoundError, ...).");

/* Why (issue 11, workload HC): the ErrorWatch registers every connection's socket and changes
 * its mask when the transport stops reading; select.epoll's methods, called from compiled code,
 * looked the method up and parsed their arguments (~500 instructions a call over the system
 * call's own). The same call on the same instance, whose descriptor the watch keeps (it calls
 * this only while its epoll object is open, in its loop's thread). */
static PyObject *
iov_epoll_ctl(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (exact_args("epoll_ctl", nargs, 4) < 0) {
        return NULL;
    }
    int values[3];
    for (Py_ssize_t i = 0; i < 3; i++) {
        long value = PyLong_AsLong(args[i]);
        if (value == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (value < INT_MIN || value > INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "epoll_ctl(): epfd, op and fd are C ints");
            return NULL;
        }
        values[i] = (int)value;
    }
    unsigned long mask = PyLong_AsUnsignedLong(args[3]);
    if (mask == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (mask > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "epoll_ctl(): events is a 32-bit mask");
        return NULL;
    }
    struct epoll_event event;
    memset(&event, 0, sizeof(event));
    event.events = (uint32_t)mask;
    event.data.fd = values[2];
    if (epoll_ctl(values[0], values[1], values[2], &event) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *
iov_watch_poll(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyLong_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "watch_poll(epfd: int, owners: dict, /)");
        return NULL;
    }
    long epfd = PyLong_AsLong(args[0]);
    if (epfd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (epfd < 0 || epfd > INT_MAX) {
        errno = EBADF;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    struct epoll_event events[WATCH_BATCH];
    int n;
    for (;;) {
        n = epoll_wait((int)epfd, events, WATCH_BATCH, 0);
        if (n >= 0 || errno != EINTR) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
    if (n < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *owners = args[1];
    Py_INCREF(owners);
    for (int i = 0; i < n; i++) {
        PyObject *owner;
        int alive = watched_owner(owners, events[i].data.fd, &owner);
        if (alive < 0) {
            goto error;
        }
        if (alive == 0) {
            continue;
        }
        PyObject *what = PyLong_FromUnsignedLong((unsigned long)events[i].events);
        if (what == NULL) {
            Py_DECREF(owner);
            goto error;
        }
        PyObject *res = PyObject_CallMethodOneArg(owner, watch_event_name, what);
        Py_DECREF(what);
        Py_DECREF(owner);
        if (res == NULL) {
            goto error;
        }
        Py_DECREF(res);
    }
    Py_DECREF(owners);
    Py_RETURN_NONE;
error:
    Py_DECREF(owners);
    return NULL;
}

static PyMethodDef iovsend_methods[] = {
    {"sendmsg", (PyCFunction)(void (*)(void))iov_sendmsg, METH_FASTCALL, sendmsg_doc},
    {"sendmsg_rest", (PyCFunction)(void (*)(void))iov_sendmsg_rest, METH_FASTCALL, sendmsg_rest_doc},
    {"sendmsg_parts", (PyCFunction)(void (*)(void))iov_sendmsg_parts, METH_FASTCALL, sendmsg_parts_doc},
    {"recv", (PyCFunction)(void (*)(void))iov_recv, METH_FASTCALL, recv_doc},
    {"so_error", iov_so_error, METH_O, so_error_doc},
    {"tcp_nodelay", iov_tcp_nodelay, METH_O, tcp_nodelay_doc},
    {"sockname", iov_sockname, METH_O, sockname_doc},
    {"accept", (PyCFunction)(void (*)(void))iov_accept, METH_FASTCALL, accept_doc},
    {"descriptor", iov_descriptor, METH_O, descriptor_doc},
    {"bytes_list_copy", iov_bytes_list_copy, METH_O, bytes_list_copy_doc},
    {"marked_closed", iov_marked_closed, METH_O, marked_closed_doc},
    {"io_refs_add", (PyCFunction)(void (*)(void))iov_io_refs_add, METH_FASTCALL, io_refs_add_doc},
    {"set_slots", (PyCFunction)(void (*)(void))iov_set_slots, METH_FASTCALL, set_slots_doc},
    {"sock_type", iov_sock_type, METH_O, sock_type_doc},
    {"sock_family", iov_sock_family, METH_O, sock_family_doc},
    {"gc_untrack", (PyCFunction)(void (*)(void))iov_gc_untrack, METH_FASTCALL, gc_untrack_doc},
    {"gc_untrack_all", iov_gc_untrack_all, METH_O, gc_untrack_all_doc},
    {"gc_track_all", iov_gc_track_all, METH_O, gc_track_all_doc},
#ifndef Py_GIL_DISABLED
    /* (exact reference counts: see iov_spare) */
    {"spare", (PyCFunction)(void (*)(void))iov_spare, METH_FASTCALL, spare_doc},
#endif
    {"support_weakrefs", iov_support_weakrefs, METH_O, support_weakrefs_doc},
    {"no_weakrefs", iov_no_weakrefs, METH_O, no_weakrefs_doc},
    {"keep_alive", iov_keep_alive, METH_O, keep_alive_doc},
    {"watch_poll", (PyCFunction)(void (*)(void))iov_watch_poll, METH_FASTCALL, watch_poll_doc},
    {"epoll_ctl", (PyCFunction)(void (*)(void))iov_epoll_ctl, METH_FASTCALL, epoll_ctl_doc},
    {"done", iov_done, METH_O, done_doc},
#ifndef Py_GIL_DISABLED
    /* (its owner and count are guarded by the GIL: a free-threaded build uses threading's) */
    {"rlock", iov_rlock, METH_NOARGS, rlock_doc},
#endif
#if PY_VERSION_HEX < 0x030C0000
    {"firstiter_self_is", iov_firstiter_self_is, METH_O, firstiter_self_is_doc},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef iovsend_module = {
    PyModuleDef_HEAD_INIT,
    "wsasend._iovsend",
    "Socket calls of the hot paths without CPython's argument parsing (compiled build only).",
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
    if (socket_type == NULL) {
        PyObject *mod = PyImport_ImportModule("_socket");
        if (mod == NULL) {
            return NULL;
        }
        PyObject *type = PyObject_GetAttrString(mod, "socket");
        Py_DECREF(mod);
        if (type == NULL) {
            return NULL;
        }
        if (!PyType_Check(type)) {
            Py_DECREF(type);
            PyErr_SetString(PyExc_ImportError, "_socket.socket is not a type");
            return NULL;
        }
        socket_type = (PyTypeObject *)type;  /* kept for the life of the process */
        io_refs_name = PyUnicode_InternFromString("_io_refs");  /* (the process's life) */
        closed_name = PyUnicode_InternFromString("_closed");
        if (io_refs_name == NULL || closed_name == NULL) {
            return NULL;
        }
        find_closed_member();
        type_descr = find_int_member("type");
        if (PyType_Ready(&rlock_type) < 0 || PyType_Ready(&done_type) < 0 || PyType_Ready(&done_gc_type) < 0) {
            return NULL;
        }
        family_descr = find_int_member("family");
        watch_event_name = PyUnicode_InternFromString("_watch_event");  /* (the process's life) */
        if (watch_event_name == NULL) {
            return NULL;
        }
    }
    return PyModuleDef_Init(&iovsend_module);
}
