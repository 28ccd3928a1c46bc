// The official C++ Socket.IO client (socketio/socket.io-client-cpp 3.x,
// Socket.IO v5 over Engine.IO v4, WebSocket only) against the interop server
// (examples/interop.rs). run.sh builds it and drives it:
//
//   interop_client <url>
//
// Each case prints "ok - <name>"; the first failure prints
// "FAIL - <name>: <what>" and exits 1. The server restart is asked of the
// runner, which owns the server process: the program prints "@@ kill-server"
// or "@@ start-server" on stdout and waits for the runner's "ok" on stdin.

#include <sio_client.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using sio::message;
using Args = std::vector<message::ptr>;
using namespace std::chrono_literals;

namespace {

struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& what) { throw Failure(what); }

// ---- messages: building them, and one canonical text to compare and print --

message::ptr str(const std::string& s) { return sio::string_message::create(s); }
message::ptr num(int64_t i) { return sio::int_message::create(i); }
message::ptr dbl(double d) { return sio::double_message::create(d); }
message::ptr boolean(bool b) { return sio::bool_message::create(b); }
message::ptr null() { return sio::null_message::create(); }
message::ptr bin(const std::string& bytes) {
    return sio::binary_message::create(std::make_shared<const std::string>(bytes));
}
message::ptr arr(std::initializer_list<message::ptr> items) {
    auto a = sio::array_message::create();
    for (const auto& item : items) a->get_vector().push_back(item);
    return a;
}
message::ptr obj(std::initializer_list<std::pair<const std::string, message::ptr>> fields) {
    auto o = sio::object_message::create();
    for (const auto& [k, v] : fields) o->get_map()[k] = v;
    return o;
}

Args args_of(const message::list& list) {
    Args out;
    for (size_t i = 0; i < list.size(); ++i) out.push_back(list.at(i));
    return out;
}
message::list list_of(const Args& args) { return message::list(Args(args)); }

void show_to(std::ostringstream& out, const message::ptr& m) {
    if (!m) {
        out << "<none>";
        return;
    }
    switch (m->get_flag()) {
    case message::flag_null: out << "null"; break;
    case message::flag_boolean: out << (m->get_bool() ? "true" : "false"); break;
    case message::flag_integer: out << m->get_int(); break;
    case message::flag_double: out << m->get_double(); break;
    case message::flag_string: out << '"' << m->get_string() << '"'; break;
    case message::flag_binary: {
        out << "<bin:";
        static const char* hex = "0123456789abcdef";
        for (unsigned char c : *m->get_binary()) out << hex[c >> 4] << hex[c & 15];
        out << '>';
        break;
    }
    case message::flag_array: {
        out << '[';
        const char* sep = "";
        for (const auto& item : m->get_vector()) {
            out << sep;
            show_to(out, item);
            sep = ",";
        }
        out << ']';
        break;
    }
    case message::flag_object: {
        // a std::map: the keys come sorted, so the text is canonical
        out << '{';
        const char* sep = "";
        for (const auto& [k, v] : m->get_map()) {
            out << sep << '"' << k << "\":";
            show_to(out, v);
            sep = ",";
        }
        out << '}';
        break;
    }
    }
}

std::string show(const message::ptr& m) {
    std::ostringstream out;
    show_to(out, m);
    return out.str();
}
std::string show(const Args& args) {
    auto a = sio::array_message::create();
    a->get_vector() = args;
    return show(a);
}

void expect_eq(const std::string& got, const std::string& want, const std::string& what) {
    if (got != want) fail(what + ": got " + got + ", want " + want);
}

// The string field `key` of object message `m`.
std::string field(const message::ptr& m, const std::string& key) {
    if (!m || m->get_flag() != message::flag_object) fail("not an object: " + show(m));
    auto it = m->get_map().find(key);
    if (it == m->get_map().end() || it->second->get_flag() != message::flag_string)
        fail("no string \"" + key + "\" in " + show(m));
    return it->second->get_string();
}

// ---- waiting for what the client's network thread delivers ----------------

template <class T>
class Inbox {
public:
    explicit Inbox(std::string what) : what_(std::move(what)) {}

    void push(T item) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            items_.push_back(std::move(item));
        }
        cv_.notify_all();
    }

    T pop(std::chrono::milliseconds timeout = 5s) {
        std::unique_lock<std::mutex> lock(mu_);
        if (!cv_.wait_for(lock, timeout, [&] { return !items_.empty(); }))
            fail("no " + what_ + " within " + std::to_string(timeout.count()) + " ms");
        T item = std::move(items_.front());
        items_.pop_front();
        return item;
    }

    void expect_none(std::chrono::milliseconds within) {
        std::unique_lock<std::mutex> lock(mu_);
        if (cv_.wait_for(lock, within, [&] { return !items_.empty(); }))
            fail("unexpected " + what_);
    }

private:
    std::string what_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<T> items_;
};

// One sio::client with inboxes for what the tests wait on. The inboxes are
// declared before the client, so they outlive its network thread.
class Client {
public:
    Inbox<bool> opened{"connection open"};
    Inbox<sio::client::close_reason> closed{"connection close"};
    Inbox<unsigned> reconnect_scheduled{"reconnection attempt scheduled"};
    Inbox<std::string> socket_closed{"namespace close"};

    explicit Client(bool reconnect = false) {
        io.set_logs_quiet();
        if (reconnect) {
            io.set_reconnect_delay(200);
            io.set_reconnect_delay_max(500);
        } else {
            io.set_reconnect_attempts(0);
        }
        io.set_open_listener([this] { opened.push(true); });
        io.set_close_listener([this](sio::client::close_reason r) { closed.push(r); });
        io.set_reconnect_listener([this](unsigned made, unsigned) { reconnect_scheduled.push(made); });
        io.set_socket_close_listener([this](const std::string& nsp) { socket_closed.push(nsp); });
    }

    ~Client() {
        io.clear_con_listeners();
        io.clear_socket_listeners();
        io.sync_close();
    }

    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    sio::client io;
};

// A namespace socket with an inbox per event it listens to. The events
// are bound right after client.connect(), as the client's own examples do:
// the connection opens on the network thread, after the binding.
class Socket {
public:
    Socket(Client& client, const std::string& nsp, std::initializer_list<std::string> events)
        : nsp_(nsp), sock_(client.io.socket(nsp)) {
        for (const auto& name : events) {
            auto box = std::make_shared<Inbox<Args>>("\"" + name + "\" on " + nsp);
            inboxes_.emplace_back(name, box);
            sock_->on(name, [box](sio::event& ev) { box->push(args_of(ev.get_messages())); });
        }
    }

    Inbox<Args>& inbox(const std::string& name) {
        for (auto& [n, box] : inboxes_)
            if (n == name) return *box;
        fail("no inbox for " + name);
    }

    // The server's `welcome` (its first argument), checked against the namespace.
    message::ptr welcome(std::chrono::milliseconds timeout = 5s) {
        Args w = inbox("welcome").pop(timeout);
        if (w.size() != 1) fail("welcome with " + show(w));
        expect_eq(field(w[0], "nsp"), nsp_, "the welcome's namespace");
        return w[0];
    }

    void emit(const std::string& name, const Args& args = {}) { sock_->emit(name, list_of(args)); }

    // emit with an ack; returns the ack's arguments.
    Args call(const std::string& name, const Args& args = {}, std::chrono::milliseconds timeout = 5s) {
        auto box = std::make_shared<Inbox<Args>>("ack of \"" + name + "\" on " + nsp_);
        sock_->emit(name, list_of(args), [box](const message::list& ack) { box->push(args_of(ack)); });
        return box->pop(timeout);
    }

    sio::socket::ptr raw() { return sock_; }

private:
    std::string nsp_;
    sio::socket::ptr sock_;
    std::vector<std::pair<std::string, std::shared_ptr<Inbox<Args>>>> inboxes_;
};

std::string url;

message::ptr auth(const std::string& token) { return obj({{"token", str(token)}}); }

// Ask the runner to do something to the server and wait for its "ok".
void ask_runner(const std::string& what) {
    std::cout << "@@ " << what << std::endl;
    std::string answer;
    if (!std::getline(std::cin, answer) || answer != "ok")
        fail("the runner did not confirm \"" + what + "\" (got \"" + answer + "\")");
}

std::string rooms_of(const Args& ack) {
    if (ack.size() != 1) fail("join/leave ack with " + show(ack));
    auto it = ack[0]->get_map().find("rooms");
    if (it == ack[0]->get_map().end()) fail("no rooms in " + show(ack));
    return show(it->second);
}

std::string sorted_rooms(std::vector<std::string> rooms) {
    std::sort(rooms.begin(), rooms.end());
    auto a = sio::array_message::create();
    for (const auto& r : rooms) a->get_vector().push_back(str(r));
    return show(a);
}

// ---- the cases ---------------------------------------------------------------

void connect_with_auth() {
    Client c;
    c.io.connect(url, auth("secret"));
    Socket priv(c, "/private", {"welcome"});
    message::ptr w = priv.welcome();
    expect_eq(show(w->get_map()["auth"]), R"({"token":"secret"})", "the auth the server saw");
    expect_eq(show(priv.call("echo", {str("private")})), R"(["private"])", "echo on /private");
}

void refused_with_the_servers_message() {
    for (bool with_token : {true, false}) {
        Client c;
        if (with_token)
            c.io.connect(url, auth("wrong"));
        else
            c.io.connect(url);
        auto errors = std::make_shared<Inbox<std::string>>("connect error on /private");
        Socket priv(c, "/private", {"welcome"});
        priv.raw()->on_error([errors](const message::ptr& m) { errors->push(show(m)); });
        expect_eq(errors->pop(), R"({"data":{"reason":"bad token"},"message":"unauthorized"})",
                  with_token ? "refusal of a wrong token" : "refusal without auth");
        priv.inbox("welcome").expect_none(200ms);
    }
}

void events_and_acks_client_to_server() {
    Client c;
    c.io.connect(url);
    Socket s(c, "/", {"welcome", "message-back"});
    s.welcome();
    Args args = {str("text"), num(42), dbl(-1.5), boolean(true), null(), arr({num(1), str("x")}),
                 obj({{"nested", obj({{"k", arr({num(1), num(2)})}})}, {"u", str("c\xc3\xb6" "d\xc3\xa9")}})};
    expect_eq(show(s.call("echo", args)), show(args), "echo's ack");
    expect_eq(show(s.call("echo")), "[]", "an ack without arguments");
    s.emit("message", {str("hello"), obj({{"n", num(1)}})});
    expect_eq(show(s.inbox("message-back").pop()), R"(["hello",{"n":1}])", "message-back");
}

void acks_server_to_client() {
    Client c;
    c.io.connect(url);
    Socket s(c, "/", {"welcome"});
    auto questions = std::make_shared<Inbox<Args>>("\"question\" from the server");
    s.raw()->on("question", [questions](sio::event& ev) {
        Args got = args_of(ev.get_messages());
        questions->push(got);
        if (!ev.need_ack()) return;
        got.insert(got.begin(), str("got"));
        ev.put_ack_message(list_of(got));
    });
    s.welcome();
    expect_eq(show(s.call("ask-client")), R"([{"answer":["got",1,"two"]}])", "the server's ack of ask-client");
    expect_eq(show(questions->pop()), R"([1,"two"])", "the question's arguments");
}

// Binary attachments as this client can take them. socket.io-client-cpp 3.x
// still reads an incoming binary WebSocket frame the Engine.IO v3 way: only
// a frame whose first byte is 4 (v3's "message" type) counts as an
// attachment, and that byte is kept as data (upstream issues #299 and #436,
// open; PR #431). Engine.IO v4 servers (Node's as well as this one) send
// attachments raw, so any other first byte loses the packet. Attachments
// starting with 0x04 go both ways intact, so those are what is sent here.
message::ptr att(const std::string& bytes) { return bin("\x04" + bytes); }

void binary_both_ways() {
    std::string all_bytes;  // every byte value, starting at 4
    for (int i = 0; i < 256; ++i) all_bytes.push_back(static_cast<char>((i + 4) % 256));
    message::ptr nested = obj({{"file", bin(all_bytes)},
                               {"parts", arr({att(std::string("\0", 1)), obj({{"deep", att("\xff\xfe")}, {"text", str("t")}})})},
                               {"n", num(3)}});
    message::ptr answer = obj({{"bin", att("\x01\x02\x03")}, {"list", arr({bin(all_bytes)})}});

    Client c;
    c.io.connect(url);
    Socket s(c, "/", {"welcome", "message-back"});
    s.raw()->on("question", [answer](sio::event& ev) { ev.put_ack_message(message::list(answer)); });
    s.welcome();
    // client -> server binary event, server -> client binary ack
    Args sent = {att("top"), nested};
    expect_eq(show(s.call("echo", sent)), show(sent), "binary echo");
    // server -> client binary event
    s.emit("message", {nested, bin(all_bytes)});
    expect_eq(show(s.inbox("message-back").pop()), show(Args{nested, bin(all_bytes)}), "binary message-back");
    // client -> server binary ack, sent back inside the server's ack
    expect_eq(show(s.call("ask-client")), show(Args{obj({{"answer", arr({answer})}})}), "binary answer to a question");
}

void rooms_join_publish_leave() {
    Client ca, cb;
    ca.io.connect(url);
    cb.io.connect(url);
    Socket a(ca, "/", {"welcome", "msg"});
    Socket b(cb, "/", {"welcome", "msg"});
    std::string a_sid = field(a.welcome(), "sid");
    std::string b_sid = field(b.welcome(), "sid");
    const std::string room = "cpp-room-" + a_sid;

    expect_eq(rooms_of(a.call("join", {str(room)})), sorted_rooms({a_sid, room}), "a's rooms after join");
    b.emit("publish", {str(room), str("to-room"), num(1)});
    expect_eq(show(a.inbox("msg").pop()), R"(["to-room",1])", "publish to a's room");
    b.inbox("msg").expect_none(300ms);

    expect_eq(rooms_of(b.call("join", {str(room)})), sorted_rooms({b_sid, room}), "b's rooms after join");
    a.emit("publish-others", {str(room), str("from-a"), att("\x07")});
    expect_eq(show(b.inbox("msg").pop()), R"(["from-a",<bin:0407>])", "publish-others to b");
    a.emit("publish", {str(room), str("everyone")});
    expect_eq(show(a.inbox("msg").pop()), R"(["everyone"])", "publish reaches the sender; publish-others did not");
    expect_eq(show(b.inbox("msg").pop()), R"(["everyone"])", "publish reaches b");

    expect_eq(rooms_of(a.call("leave", {str(room)})), sorted_rooms({a_sid}), "a's rooms after leave");
    b.emit("publish", {str(room), str("after-leave")});
    expect_eq(show(b.inbox("msg").pop()), R"(["after-leave"])", "publish after a left");
    a.inbox("msg").expect_none(300ms);
}

void reconnects_by_itself_after_a_server_restart() {
    Client c(true);
    c.io.connect(url);
    Socket s(c, "/", {"welcome"});
    std::string first_sid = field(s.welcome(), "sid");
    c.opened.pop();
    expect_eq(show(s.call("echo", {str("before")})), R"(["before"])", "echo before the restart");

    ask_runner("kill-server");
    c.reconnect_scheduled.pop(5s);  // the drop was seen
    c.reconnect_scheduled.pop(5s);  // and an attempt failed against the dead port
    ask_runner("start-server");

    c.opened.pop(10s);
    std::string sid = field(s.welcome(10s), "sid");
    if (sid == first_sid) fail("the same socket id " + sid + " from a new server");
    Args after = {str("after"), obj({{"restarted", boolean(true)}})};
    expect_eq(show(s.call("echo", after)), show(after), "echo after the restart");
    expect_eq(rooms_of(s.call("join", {str("r")})), sorted_rooms({sid, "r"}),
              "the new server knows nothing of the old rooms");
}

void close_connection_then_an_explicit_reconnect() {
    Client c(true), other_client;
    c.io.connect(url);
    other_client.io.connect(url);
    Socket s(c, "/", {"welcome"});
    Socket other(other_client, "/", {"welcome"});
    std::string first_sid = field(s.welcome(), "sid");
    other.welcome();
    c.opened.pop();

    s.emit("close-connection");
    expect_eq(c.socket_closed.pop(3s), "/", "the namespace the server disconnected");
    // The server then closes the connection; the client does not come back
    // by itself.
    if (c.closed.pop(3s) != sio::client::close_reason_normal) fail("the connection closed as a drop");
    s.inbox("welcome").expect_none(800ms);

    c.io.connect(url);
    Socket again(c, "/", {"welcome"});
    std::string sid = field(again.welcome(), "sid");
    if (sid == first_sid) fail("the same socket id after reconnecting");
    expect_eq(show(again.call("echo", {str("reconnected")})), R"(["reconnected"])", "echo after reconnecting");
    expect_eq(show(other.call("echo", {str("other ok")})), R"(["other ok"])", "the other client is untouched");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: " << argv[0] << " <server url>\n";
        return 2;
    }
    url = argv[1];
    const std::pair<const char*, void (*)()> cases[] = {
        {"connect with auth", connect_with_auth},
        {"refused with the server's message", refused_with_the_servers_message},
        {"events and acks, client to server", events_and_acks_client_to_server},
        {"acks, server to client", acks_server_to_client},
        {"binary both ways", binary_both_ways},
        {"rooms: join, publish, publish-others, leave", rooms_join_publish_leave},
        {"reconnects by itself after a server restart", reconnects_by_itself_after_a_server_restart},
        {"close-connection, then an explicit reconnect", close_connection_then_an_explicit_reconnect},
    };
    for (const auto& [name, run] : cases) {
        try {
            run();
        } catch (const std::exception& e) {
            std::cout << "FAIL - " << name << ": " << e.what() << std::endl;
            return 1;
        }
        std::cout << "ok - " << name << std::endl;
    }
    std::cout << "all " << std::size(cases) << " cases passed" << std::endl;
    return 0;
}
