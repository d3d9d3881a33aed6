/* stats.c: the STATS line: the library's counters, rss_kb, the server's. */
#include "testsrv.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* VmRSS of this process in KiB, or 0 if /proc cannot tell. */
static uint64_t rss_kb(void)
{
    char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *p = strstr(buf, "\nVmRSS:");
    return p ? strtoull(p + 7, NULL, 10) : 0;
}

void stats_reply(struct srv *s, evl_conn *c)
{
    struct evl_stats st;
    evl_stats(s->loop, &st);
    char line[1024];
    int n = snprintf(line, sizeof line,
        "{\"conns\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"closed\":%" PRIu64
        ",\"rejected\":%" PRIu64 ",\"emfile\":%" PRIu64 ",\"overflow_closed\":%" PRIu64
        ",\"idle_closed\":%" PRIu64 ",\"close_timeouts\":%" PRIu64 ",\"wbuf_bytes\":%" PRIu64
        ",\"wbuf_peak\":%" PRIu64 ",\"rbuf_bytes\":%" PRIu64 ",\"ticks\":%" PRIu64
        ",\"iterations\":%" PRIu64 ",\"rss_kb\":%" PRIu64
        ",\"bcast_msgs\":%" PRIu64 ",\"bcast_dropped\":%" PRIu64 ",\"bcast_overflow\":%" PRIu64
        ",\"outbox_bytes\":%" PRIu64 ",\"fifo_lines\":%" PRIu64 ",\"fifo_reopens\":%" PRIu64 ",\"blast_yields\":%" PRIu64
        ",\"tick_calls\":%" PRIu64 "}\n",
        st.conns, st.accepted, st.closed, st.rejected, st.emfile, st.overflow_closed,
        st.idle_closed, st.close_timeouts, st.wbuf_bytes, st.wbuf_peak, st.rbuf_bytes,
        st.ticks, st.iterations, rss_kb(), s->n.bcast_msgs, s->n.bcast_dropped,
        s->n.bcast_overflow, s->n.outbox_bytes, s->n.fifo_lines, s->n.fifo_reopens, s->n.blast_yields,
        s->n.tick_calls);
    if (n > 0 && (size_t)n < sizeof line)
        (void)evl_write(c, line, (size_t)n);
}
