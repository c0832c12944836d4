/*
 * libFuzzer harness: the flow classifier of netwatch._fastpath (link layers, tunnels, IP, TCP/UDP,
 * the protocol-aware TCP head rule, deferred SYNs and the watch set), on hostile frames.
 *
 * Input: a sequence of records [linktype selector (1 byte)][length (2 bytes, little-endian)][frame].
 * All frames go through one small filter, so flow state (hellos over several segments, held SYNs,
 * evictions) is exercised too. Built by fuzz/build.sh with -fsanitize=fuzzer,address,undefined.
 */
#include "../netwatch/capture/_fastpath.c"

static const int LINKTYPES[] = {0, 1, 9, 12, 14, 50, 101, 104, 108, 113, 204, 228, 229, 276, 147};

static FlowFilterObject *new_filter(void)
{
    static FlowFilterObject f;
    static flow_entry table[64 * BUCKET_SIZE];
    static syn_slot slots[64 * BUCKET_SIZE];
    static uint32_t held_dst[64 * BUCKET_SIZE];
    static addr128 watch_set[WATCH_SLOTS];
    static addr_range ranges[2];
    memset(&f, 0, sizeof f);
    memset(table, 0, sizeof table);
    memset(slots, 0, sizeof slots);
    memset(held_dst, 0, sizeof held_dst);
    f.table = table;
    f.nbuckets = 64;
    f.max_flows = 64 * BUCKET_SIZE;
    f.head_packets = 16;
    f.head_bytes = 32768;
    f.head_unknown_packets = 4;
    f.idle_timeout = 120.0;
    f.latest_ts = -1e300;
    f.smart = 1;
    f.watching = 1;
    f.syn_slots = slots;
    f.held_dst = held_dst;
    f.watch_set = watch_set;
    /* 10.0.0.0/8 and 2001:db8::/32 are watched */
    ranges[0].lo = (addr128){0, 0x0000ffff0a000000ULL};
    ranges[0].hi = (addr128){0, 0x0000ffff0affffffULL};
    ranges[1].lo = (addr128){0x20010db800000000ULL, 0};
    ranges[1].hi = (addr128){0x20010db8ffffffffULL, ~0ULL};
    f.ranges = ranges;
    f.n_ranges = 2;
    return &f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FlowFilterObject *f = new_filter();
    uint64_t frame = 0;
    while (size >= 3) {
        int linktype = LINKTYPES[data[0] % (sizeof LINKTYPES / sizeof LINKTYPES[0])];
        size_t len = (size_t)data[1] | ((size_t)data[2] << 8);
        data += 3;
        size -= 3;
        if (len > size)
            len = size;
        /* a copy of exactly len bytes, so ASan sees any read past the frame */
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, data, len);
        frame++;
        if (classify(f, linktype, copy, len, (double)frame, frame) && f->release != NULL) {
            syn_slot *held = f->release;
            f->release = NULL;
            forget_held(f, (size_t)(held - f->syn_slots));
        }
        free(copy);
        data += len;
        size -= len;
    }
    return 0;
}
