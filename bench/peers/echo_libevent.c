/* echo_libevent: the echo server as libevent users write it: an
 * evconnlistener and one bufferevent per connection whose read callback
 * moves the whole input evbuffer onto the output (evbuffer_add_buffer moves
 * chains, it does not copy bytes). Reads and writes of up to 64 KiB, as the
 * other servers do (libevent's default is 16 KiB). */
#include "peer_common.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct conn {
    struct bufferevent *bev;
    struct conn *prev, *next; /* all connections, so SIGTERM can free them */
} conn;

static conn *conns;

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

static void drop(conn *c)
{
    bufferevent_free(c->bev); /* BEV_OPT_CLOSE_ON_FREE closes the fd */
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

/* Output fell to the low mark: the paused reader resumes. */
static void on_drained(struct bufferevent *bev, void *arg)
{
    bufferevent_setcb(bev, on_read, NULL, on_event, arg);
    bufferevent_enable(bev, EV_READ);
}

/* The peer is gone and every owed byte is written: close. */
static void on_flushed(struct bufferevent *bev, void *arg)
{
    (void)bev;
    drop(arg);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    evbuffer_add_buffer(out, bufferevent_get_input(bev));
    if (evbuffer_get_length(out) >= PEER_HIGH) {
        /* A client that does not read its echoes gets no more served. The
         * write callback is set only while paused, so the common path pays
         * for no callback per write. */
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(bev, EV_WRITE, PEER_LOW, 0);
        bufferevent_setcb(bev, on_read, on_drained, on_event, arg);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    if ((what & BEV_EVENT_EOF) && evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_setcb(bev, NULL, on_flushed, on_event, arg);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        drop(arg);
}

static void on_accept(struct evconnlistener *ls, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    (void)sa;
    (void)socklen;
    (void)arg;
    struct event_base *base = evconnlistener_get_base(ls);
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    peer_nodelay(fd);
    bufferevent_set_max_single_read(c->bev, PEER_READ);
    bufferevent_set_max_single_write(c->bev, PEER_READ);
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    int port = peer_args(argc, argv, "echo_libevent");
    struct event_config *cfg = event_config_new();
    /* The epoll backend, like every server in the comparison. */
    event_config_avoid_method(cfg, "poll");
    event_config_avoid_method(cfg, "select");
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!base)
        peer_die("echo_libevent", "event_base_new");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct evconnlistener *ls = evconnlistener_new_bind(
        base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, -1,
        (struct sockaddr *)&a, sizeof a);
    if (!ls)
        peer_die("echo_libevent", "evconnlistener_new_bind");
    socklen_t len = sizeof a;
    if (getsockname(evconnlistener_get_fd(ls), (struct sockaddr *)&a, &len) < 0)
        peer_die("echo_libevent", "getsockname");
    struct event *term = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *intr = evsignal_new(base, SIGINT, on_signal, base);
    if (!term || !intr || evsignal_add(term, NULL) < 0 || evsignal_add(intr, NULL) < 0)
        peer_die("echo_libevent", "evsignal");
    peer_listening(ntohs(a.sin_port));
    event_base_dispatch(base);
    for (conn *c = conns, *next; c; c = next) {
        next = c->next;
        drop(c);
    }
    event_free(term);
    event_free(intr);
    evconnlistener_free(ls);
    event_base_free(base);
    libevent_global_shutdown();
    return 0;
}
