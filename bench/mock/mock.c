/*
 * A fast mock of Anthropic's Messages API for benchmarks: one process, one thread, epoll,
 * HTTP/1.1 keep-alive (pipelining too), loopback only by default.
 *
 *   POST /v1/messages  without "stream": true  ->  a canned Messages JSON (content-length)
 *   POST /v1/messages  with    "stream": true  ->  an SSE stream (chunked), Anthropic's order:
 *       message_start, ping, content_block_start, N x content_block_delta (text_delta "w<i> ",
 *       paced M ms apart), content_block_stop, message_delta (usage), message_stop
 *   anything else                              ->  404 in Anthropic's error shape
 *
 * Flags: --host H (127.0.0.1) --port P (0 = any; the bound port is printed as "port P")
 *        --deltas N (50) --interval-ms M (20) --delay-ms D (0: delay before the first byte)
 *
 * Timers: every stream waits the same M and every response the same D, so the waiting
 * connections form two FIFO lists already sorted by due time; no heap is needed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 512
#define READ_CHUNK 65536
/* Requests of a benchmark are a few hundred bytes; anything this large is refused. */
#define MAX_REQUEST_BYTES (4 * 1024 * 1024)

enum phase { READING, WAITING_FIRST_BYTE, STREAMING };

struct buf {
    char *data;
    size_t len, cap;
};

struct conn {
    int fd;
    enum phase phase;
    int stream;        /* the current request asked for SSE */
    int close_after;   /* Connection: close, or an error */
    int sent_deltas;
    int want_write;    /* EPOLLOUT registered */
    int peer_closed;
    unsigned long long id;
    struct buf in, out;
    /* timer list membership */
    struct timer_list *list;
    struct conn *prev, *next;
    int64_t due_ns;
};

struct timer_list {
    struct conn *head, *tail;
};

static int epfd;
static int g_deltas = 50;
static int64_t g_interval_ns = 20 * 1000000LL;
static int64_t g_delay_ns = 0;
static unsigned long long g_next_id = 1;
static struct timer_list first_byte_timers, delta_timers;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void buf_reserve(struct buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) die("realloc");
    b->cap = cap;
}

static void buf_append(struct buf *b, const char *s, size_t n) {
    buf_reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void buf_consume(struct buf *b, size_t n) {
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

/* ---- timers ---------------------------------------------------------------------------- */

static void timer_remove(struct conn *c) {
    struct timer_list *l = c->list;
    if (!l) return;
    if (c->prev) c->prev->next = c->next; else l->head = c->next;
    if (c->next) c->next->prev = c->prev; else l->tail = c->prev;
    c->prev = c->next = NULL;
    c->list = NULL;
}

static void timer_push(struct timer_list *l, struct conn *c, int64_t due) {
    timer_remove(c);
    c->due_ns = due;
    c->list = l;
    c->prev = l->tail;
    c->next = NULL;
    if (l->tail) l->tail->next = c; else l->head = c;
    l->tail = c;
}

/* ---- output ---------------------------------------------------------------------------- */

static void set_events(struct conn *c, int want_write) {
    if (c->want_write == want_write) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want_write ? EPOLLOUT : 0),
                             .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
    c->want_write = want_write;
}

static void close_conn(struct conn *c) {
    timer_remove(c);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in.data);
    free(c->out.data);
    free(c);
}

/* Write what is queued; returns -1 if the connection died (and was freed). */
static int flush_out(struct conn *c) {
    while (c->out.len) {
        ssize_t n = write(c->fd, c->out.data, c->out.len);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, 1);
            return 0;
        } else {
            close_conn(c);
            return -1;
        }
    }
    set_events(c, 0);
    return 0;
}

static void queue_chunk(struct conn *c, const char *payload, size_t n) {
    char head[32];
    int h = snprintf(head, sizeof head, "%zx\r\n", n);
    buf_append(&c->out, head, (size_t)h);
    buf_append(&c->out, payload, n);
    buf_append(&c->out, "\r\n", 2);
}

static void queue_event(struct conn *c, const char *name, const char *data) {
    char tmp[2048];
    int n = snprintf(tmp, sizeof tmp, "event: %s\ndata: %s\n\n", name, data);
    queue_chunk(c, tmp, (size_t)n);
}

/* Headers Anthropic sends that a proxy has to carry downstream. */
#define COMMON_HEADERS                                             \
    "anthropic-organization-id: 00000000-0000-4000-8000-000000bench\r\n" \
    "anthropic-ratelimit-requests-limit: 4000\r\n"                 \
    "anthropic-ratelimit-requests-remaining: 3999\r\n"             \
    "anthropic-ratelimit-requests-reset: 2030-01-01T00:00:00Z\r\n" \
    "anthropic-ratelimit-tokens-limit: 2000000\r\n"                \
    "anthropic-ratelimit-tokens-remaining: 1999000\r\n"            \
    "anthropic-ratelimit-tokens-reset: 2030-01-01T00:00:00Z\r\n"

static void queue_json_response(struct conn *c, int status, const char *reason,
                                const char *body) {
    char head[1024];
    size_t len = strlen(body);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                     "content-length: %zu\r\nrequest-id: req_bench%016llx\r\n" COMMON_HEADERS
                     "%s\r\n",
                     status, reason, len, c->id, c->close_after ? "connection: close\r\n" : "");
    buf_append(&c->out, head, (size_t)n);
    buf_append(&c->out, body, len);
}

static const char MESSAGE_BODY[] =
    "{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\","
    "\"model\":\"claude-sonnet-4-6\",\"content\":[{\"type\":\"text\","
    "\"text\":\"Hello! How can I help you today?\"}],\"stop_reason\":\"end_turn\","
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":8,\"cache_creation_input_tokens\":0,"
    "\"cache_read_input_tokens\":0,\"output_tokens\":12}}";

static const char NOT_FOUND_BODY[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\",\"message\":\"Not found\"}}";

static void start_stream(struct conn *c) {
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                     "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
                     "request-id: req_bench%016llx\r\n"
                     COMMON_HEADERS "%s\r\n",
                     c->id, c->close_after ? "connection: close\r\n" : "");
    buf_append(&c->out, head, (size_t)n);
    char data[1024];
    snprintf(data, sizeof data,
             "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench%016llx\","
             "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-6\","
             "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":"
             "{\"input_tokens\":8,\"cache_creation_input_tokens\":0,"
             "\"cache_read_input_tokens\":0,\"output_tokens\":1}}}",
             c->id);
    queue_event(c, "message_start", data);
    queue_event(c, "ping", "{\"type\": \"ping\"}");
    queue_event(c, "content_block_start",
                "{\"type\":\"content_block_start\",\"index\":0,"
                "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}");
    c->phase = STREAMING;
    c->sent_deltas = 0;
}

static void queue_delta(struct conn *c) {
    char data[256];
    snprintf(data, sizeof data,
             "{\"type\":\"content_block_delta\",\"index\":0,"
             "\"delta\":{\"type\":\"text_delta\",\"text\":\"w%d \"}}",
             c->sent_deltas);
    queue_event(c, "content_block_delta", data);
    c->sent_deltas++;
}

static void finish_stream(struct conn *c) {
    char data[256];
    queue_event(c, "content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}");
    snprintf(data, sizeof data,
             "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
             "\"stop_sequence\":null},\"usage\":{\"output_tokens\":%d}}",
             g_deltas);
    queue_event(c, "message_delta", data);
    queue_event(c, "message_stop", "{\"type\":\"message_stop\"}");
    buf_append(&c->out, "0\r\n\r\n", 5);
    c->phase = READING;
}

/* ---- requests -------------------------------------------------------------------------- */

static const char *find_crlfcrlf(const char *s, size_t n) {
    return memmem(s, n, "\r\n\r\n", 4);
}

/* The value of header `name` (lower-case) in the head [s, end), or NULL. */
static const char *header_value(const char *s, const char *end, const char *name,
                                size_t *vlen) {
    size_t nlen = strlen(name);
    const char *line = memchr(s, '\n', (size_t)(end - s));
    while (line && line + 1 < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) eol = end;
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 &&
            line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        line = eol;
    }
    return NULL;
}

static int body_wants_stream(const char *b, size_t n) {
    const char *end = b + n;
    const char *p = b;
    while ((p = memmem(p, (size_t)(end - p), "\"stream\"", 8)) != NULL) {
        p += 8;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
        if (p >= end || *p != ':') continue;
        p++;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
        return (size_t)(end - p) >= 4 && memcmp(p, "true", 4) == 0;
    }
    return 0;
}

static void begin_response(struct conn *c) {
    if (c->stream) {
        start_stream(c);
        if (g_deltas == 0) {
            finish_stream(c);
        } else if (g_interval_ns == 0) {
            while (c->sent_deltas < g_deltas) queue_delta(c);
            finish_stream(c);
        } else {
            timer_push(&delta_timers, c, now_ns() + g_interval_ns);
        }
    } else {
        queue_json_response(c, 200, "OK", MESSAGE_BODY);
        c->phase = READING;
    }
}

/* Parse and answer every complete request buffered; returns -1 if the connection is gone. */
static int process_input(struct conn *c) {
    while (c->phase == READING && c->in.len) {
        const char *head_end = find_crlfcrlf(c->in.data, c->in.len);
        if (!head_end) {
            if (c->in.len > 64 * 1024) {
                c->close_after = 1;
                queue_json_response(c, 431, "Request Header Fields Too Large", NOT_FOUND_BODY);
                if (flush_out(c) == 0) close_conn(c);
                return -1;
            }
            break;
        }
        const char *s = c->in.data;
        const char *hend = head_end + 2; /* includes the last header's CRLF */
        size_t head_len = (size_t)(head_end - s) + 4;
        size_t vlen = 0;
        size_t body_len = 0;
        const char *v = header_value(s, hend, "content-length", &vlen);
        if (v) body_len = strtoul(v, NULL, 10);
        if (header_value(s, hend, "transfer-encoding", &vlen) || body_len > MAX_REQUEST_BYTES) {
            c->close_after = 1;
            queue_json_response(c, 501, "Not Implemented", NOT_FOUND_BODY);
            if (flush_out(c) == 0) close_conn(c);
            return -1;
        }
        if (c->in.len < head_len + body_len) break;
        v = header_value(s, hend, "connection", &vlen);
        c->close_after = v && vlen == 5 && strncasecmp(v, "close", 5) == 0;
        c->id = g_next_id++;
        const char *path = memchr(s, ' ', head_len);
        int is_messages = strncmp(s, "POST ", 5) == 0 && path &&
                          strncmp(path + 1, "/v1/messages", 12) == 0 &&
                          (path[13] == ' ' || path[13] == '?');
        if (!is_messages) {
            queue_json_response(c, 404, "Not Found", NOT_FOUND_BODY);
        } else {
            c->stream = body_wants_stream(s + head_len, body_len);
            if (g_delay_ns > 0) {
                c->phase = WAITING_FIRST_BYTE;
                timer_push(&first_byte_timers, c, now_ns() + g_delay_ns);
            } else {
                begin_response(c);
            }
        }
        buf_consume(&c->in, head_len + body_len);
        if (c->phase == READING && c->close_after) break;
    }
    if (flush_out(c) < 0) return -1;
    if (c->phase == READING && (c->close_after || c->peer_closed) && c->out.len == 0) {
        close_conn(c);
        return -1;
    }
    return 0;
}

static void on_readable(struct conn *c) {
    for (;;) {
        if (c->in.len > MAX_REQUEST_BYTES + 65536) {
            close_conn(c);
            return;
        }
        buf_reserve(&c->in, READ_CHUNK);
        ssize_t n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
        if (n > 0) {
            c->in.len += (size_t)n;
            if ((size_t)n < READ_CHUNK) break;
        } else if (n == 0) {
            c->peer_closed = 1;
            break;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            close_conn(c);
            return;
        }
    }
    if (c->peer_closed && c->phase != READING) {
        close_conn(c); /* the client left mid-response: nothing more to send */
        return;
    }
    process_input(c);
}

static void fire_timers(int64_t now) {
    while (first_byte_timers.head && first_byte_timers.head->due_ns <= now) {
        struct conn *c = first_byte_timers.head;
        timer_remove(c);
        begin_response(c);
        if (c->phase == READING) {
            process_input(c);
        } else {
            flush_out(c);
        }
    }
    while (delta_timers.head && delta_timers.head->due_ns <= now) {
        struct conn *c = delta_timers.head;
        timer_remove(c);
        queue_delta(c);
        if (c->sent_deltas >= g_deltas) {
            finish_stream(c);
            process_input(c); /* flushes, and serves a pipelined request */
        } else {
            timer_push(&delta_timers, c, now + g_interval_ns);
            flush_out(c);
        }
    }
}

static int next_timeout_ms(int64_t now) {
    int64_t due = INT64_MAX;
    if (first_byte_timers.head) due = first_byte_timers.head->due_ns;
    if (delta_timers.head && delta_timers.head->due_ns < due) due = delta_timers.head->due_ns;
    if (due == INT64_MAX) return -1;
    if (due <= now) return 0;
    return (int)((due - now + 999999) / 1000000);
}

static void accept_all(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN, or out of descriptors: try again on the next event */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) die("calloc");
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add");
    }
}

static long parse_flag(const char *name, const char *value) {
    char *end;
    long v = strtol(value, &end, 10);
    if (*value == '\0' || *end != '\0' || v < 0) {
        fprintf(stderr, "mock: %s needs a non-negative integer\n", name);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(a, "--host") == 0) host = v;
        else if (strcmp(a, "--port") == 0) port = parse_flag(a, v);
        else if (strcmp(a, "--deltas") == 0) g_deltas = (int)parse_flag(a, v);
        else if (strcmp(a, "--interval-ms") == 0) g_interval_ns = parse_flag(a, v) * 1000000LL;
        else if (strcmp(a, "--delay-ms") == 0) g_delay_ns = parse_flag(a, v) * 1000000LL;
        else {
            fprintf(stderr, "usage: mock [--host H] [--port P] [--deltas N] [--interval-ms M] "
                            "[--delay-ms D]\n");
            return 2;
        }
        i++;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "mock: --host must be an IPv4 address\n");
        return 2;
    }
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("port %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl listen");

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, next_timeout_ms(now_ns()));
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) {
                accept_all(lfd);
                continue;
            }
            if (events[i].events & EPOLLOUT) {
                if (flush_out(c) < 0) continue;
                if (c->phase == READING && process_input(c) < 0) continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
        fire_timers(now_ns());
    }
}
