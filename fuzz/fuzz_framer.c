/*
 * libFuzzer harness: the pcap/pcapng framer of netwatch._fastpath with the classifier behind it.
 *
 * Input: a capture file's bytes, fed in two pieces (the first byte chooses where to cut), as a
 * refilled read buffer would be. Needs an embedded interpreter for the packet objects it builds.
 * Built by fuzz/build.sh with -fsanitize=fuzzer,address,undefined.
 */
#include "../netwatch/capture/_fastpath.c"

static int started = 0;

static void start_python(void)
{
    Py_InitializeEx(0);
    PyRun_SimpleString("import collections\n"
                       "class P(tuple):\n"
                       "    __slots__ = ()\n");
    PyObject *main = PyImport_AddModule("__main__");
    PyObject *cls = PyObject_GetAttrString(main, "P");
    if (cls == NULL || set_packet_type(NULL, cls) == NULL)
        abort();
    Py_DECREF(cls);
    started = 1;
}

static void feed(FramerObject *framer, FlowFilterObject *filter, const uint8_t *p, size_t n)
{
    PyObject *list = PyList_New(0);
    frame_error err = {0, {0}, 0};
    uint64_t frames = 0;
    if (framer->format == FMT_UNKNOWN && n >= 4)
        framer->format = le32(p) == 0x0A0D0D0A ? FMT_PCAPNG : FMT_PCAP;
    if (framer->format != FMT_UNKNOWN) {
        Py_ssize_t used = framer->format == FMT_PCAPNG ? feed_pcapng(framer, p, n, filter, list, &frames, &err)
                                                       : feed_pcap(framer, p, n, filter, list, &frames, &err);
        if (used < 0)
            PyErr_Clear();
    }
    Py_DECREF(list);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!started)
        start_python();
    if (size < 1)
        return 0;
    size_t cut = size > 1 ? (size_t)data[0] * (size - 1) / 255 : 0;
    data += 1;
    size -= 1;
    FramerObject framer;
    memset(&framer, 0, sizeof framer);
    FlowFilterObject filter;
    memset(&filter, 0, sizeof filter);
    flow_entry table[16 * BUCKET_SIZE];
    memset(table, 0, sizeof table);
    filter.table = table;
    filter.nbuckets = 16;
    filter.max_flows = 16 * BUCKET_SIZE;
    filter.head_packets = 16;
    filter.head_bytes = 32768;
    filter.head_unknown_packets = 4;
    filter.idle_timeout = 120.0;
    filter.latest_ts = -1e300;
    filter.smart = 1;
    /* the two pieces are separate buffers (a refill), so reads past either are caught */
    uint8_t *first = malloc(cut ? cut : 1), *second = malloc(size - cut ? size - cut : 1);
    memcpy(first, data, cut);
    memcpy(second, data + cut, size - cut);
    feed(&framer, &filter, first, cut);
    feed(&framer, &filter, second, size - cut);
    free(first);
    free(second);
    PyMem_Free(framer.ifaces);
    return 0;
}
