package org.isabroker.client;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Function;

/** A small HTTP server on 127.0.0.1 for the unit tests: a handler per path, every request kept. */
public final class FakeServer implements AutoCloseable {
    /** A request as received. */
    public static final class Request {
        final String method;
        final URI uri;
        final Map<String, String> headers;
        final byte[] body;

        Request(String method, URI uri, Map<String, String> headers, byte[] body) {
            this.method = method;
            this.uri = uri;
            this.headers = headers;
            this.body = body;
        }

        public String header(String name) {
            return headers.get(name.toLowerCase());
        }

        public String text() {
            return new String(body, StandardCharsets.UTF_8);
        }
    }

    /** An answer. */
    public static final class Answer {
        final int status;
        final Map<String, String> headers;
        final String body;

        public Answer(int status, Map<String, String> headers, String body) {
            this.status = status;
            this.headers = headers;
            this.body = body;
        }

        public static Answer json(int status, String body) {
            return new Answer(status, Map.of("Content-Type", "application/json"), body);
        }

        public static Answer problem(int status, String body, Map<String, String> extra) {
            Map<String, String> h = new TreeMap<>(extra);
            h.put("Content-Type", "application/problem+json");
            return new Answer(status, h, body);
        }
    }

    private final HttpServer server;
    private final Map<String, Function<Request, Answer>> routes = new ConcurrentHashMap<>();
    final List<Request> requests = new CopyOnWriteArrayList<>();

    public FakeServer() {
        try {
            server = HttpServer.create(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), 0), 0);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        server.createContext("/", exchange -> {
            try (exchange; InputStream in = exchange.getRequestBody()) {
                Map<String, String> headers = new TreeMap<>();
                exchange.getRequestHeaders().forEach((k, v) -> headers.put(k.toLowerCase(), v.get(0)));
                Request request = new Request(exchange.getRequestMethod(), exchange.getRequestURI(), headers,
                        in.readAllBytes());
                requests.add(request);
                String key = request.method + " " + request.uri.getPath();
                Function<Request, Answer> route = routes.get(key);
                Answer answer = route == null
                        ? Answer.problem(404, "{\"status\":404,\"code\":\"not_found\",\"title\":\"Not found\",\"detail\":\""
                                + key + "\"}", Map.of())
                        : route.apply(request);
                answer.headers.forEach((k, v) -> exchange.getResponseHeaders().add(k, v));
                byte[] body = answer.body == null ? new byte[0] : answer.body.getBytes(StandardCharsets.UTF_8);
                exchange.sendResponseHeaders(answer.status, body.length == 0 ? -1 : body.length);
                if (body.length > 0) {
                    exchange.getResponseBody().write(body);
                }
            }
        });
        server.start();
    }

    public FakeServer on(String methodAndPath, Function<Request, Answer> handler) {
        routes.put(methodAndPath, handler);
        return this;
    }

    public URI uri() {
        return URI.create("http://127.0.0.1:" + server.getAddress().getPort());
    }

    public List<Request> requests(String methodAndPath) {
        List<Request> out = new ArrayList<>();
        for (Request r : requests) {
            if ((r.method + " " + r.uri.getPath()).equals(methodAndPath)) {
                out.add(r);
            }
        }
        return out;
    }

    @Override
    public void close() {
        server.stop(0);
    }
}
