package org.isabroker.client;

import java.net.http.HttpClient;
import java.time.Duration;

/** The HTTP client the SDK makes when it is given none. */
public final class HttpClients {
    private HttpClients() {}

    /**
     * HTTP/1.1 (the JDK's default, HTTP/2, would try an {@code h2c} upgrade on plain-http
     * development brokers, which their server does not take on a request with a body),
     * redirects never followed (a redirect could leave https), 10 s to connect.
     */
    public static HttpClient defaultClient() {
        return HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10))
                .followRedirects(HttpClient.Redirect.NEVER)
                .build();
    }
}
