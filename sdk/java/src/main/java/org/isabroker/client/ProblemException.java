package org.isabroker.client;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Instant;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.function.Function;

/**
 * The broker refused a request with an RFC 9457 problem ({@code application/problem+json}).
 *
 * <p>Branch on {@link #status()} and {@link #code()} (and, for a refusal, {@link #reason()}),
 * or on the subclass: {@link SharingRefusedException}, {@link ValidationException},
 * {@link UnauthenticatedException}, {@link InsufficientScopeException},
 * {@link NotFoundException}, {@link ConflictException}, {@link RateLimitedException},
 * {@link ServerException}. {@link #detail()} and the rest of {@link #body()} are written for
 * people: log them, do not parse them.
 */
public class ProblemException extends IsaBrokerException {
    private static final long serialVersionUID = 1L;

    private final int status;
    private final String code;
    private final String type;
    private final String title;
    private final String detail;
    private final Integer retryAfter;
    private final List<String> fields;
    private final String clause;
    private final transient JsonNode body;

    protected ProblemException(int status, JsonNode body, Integer retryAfter) {
        super(message(status, body));
        this.status = status;
        this.body = body;
        this.code = Json.text(body, "code");
        this.type = Json.text(body, "type");
        this.title = Json.text(body, "title");
        this.detail = Json.text(body, "detail");
        this.retryAfter = retryAfter;
        this.fields = Collections.unmodifiableList(pointers(body));
        this.clause = clauseOf(body);
    }

    private static String message(int status, JsonNode body) {
        String code = Json.text(body, "code");
        String detail = Json.text(body, "detail");
        return "HTTP " + status + (code == null ? "" : " " + code) + (detail == null ? "" : ": " + detail);
    }

    /** The HTTP status. */
    public int status() {
        return status;
    }

    /** The machine-readable code, e.g. {@code sharing_refused}; {@code http_error} when the
     * answer was not a problem document (a proxy's error page). */
    public String code() {
        return code;
    }

    /** The problem type URI. */
    public String type() {
        return type;
    }

    public String title() {
        return title;
    }

    /** For people: never branch on it. */
    public String detail() {
        return detail;
    }

    /**
     * Seconds to wait before sending again: the {@code Retry-After} header (seconds or an HTTP
     * date), else the problem's {@code retry_after} member; empty when the broker named none.
     */
    public OptionalInt retryAfter() {
        return retryAfter == null ? OptionalInt.empty() : OptionalInt.of(retryAfter);
    }

    /** The JSON pointers of the failing fields ({@code errors[].pointer}), e.g. {@code /release/date}. */
    public List<String> fields() {
        return fields;
    }

    /**
     * For a refusal by the agreements ({@code sharing_refused}), the agreement clause behind
     * it: the first rule the broker names, as {@code AGREEMENT@version#flow} (e.g.
     * {@code ISA-WS-003@1.0#release-to-youth-justice}); null otherwise, or when the refusal
     * names no rule (no agreement covers the share at all).
     */
    public String clause() {
        return clause;
    }

    /** A {@code sharing_refused} reason such as {@code agreement_not_in_force}; null otherwise. */
    public String reason() {
        return Json.text(body, "reason");
    }

    /** The whole problem document. */
    public JsonNode body() {
        return body;
    }

    /** A member of the problem document, if present. */
    public Optional<JsonNode> member(String name) {
        JsonNode v = body.get(name);
        return v == null || v.isNull() ? Optional.empty() : Optional.of(v);
    }

    private static List<String> pointers(JsonNode body) {
        List<String> out = new ArrayList<>();
        JsonNode errors = body.get("errors");
        if (errors != null && errors.isArray()) {
            for (JsonNode e : errors) {
                String p = Json.text(e, "pointer");
                if (p != null) {
                    out.add(p);
                }
            }
        }
        return out;
    }

    /** {@code sharing_refused}: its first rule as {@code agreement@version#flow}; else null. */
    private static String clauseOf(JsonNode body) {
        if (!"sharing_refused".equals(Json.text(body, "code"))) {
            return null;
        }
        JsonNode rules = body.get("rules");
        if (rules == null || !rules.isArray() || rules.isEmpty()) {
            return null;
        }
        JsonNode first = rules.get(0);
        String agreement = Json.text(first, "agreement");
        String version = Json.text(first, "version");
        String flow = Json.text(first, "flow");
        if (agreement == null || version == null || flow == null) {
            return null;
        }
        return agreement + "@" + version + "#" + flow;
    }

    /**
     * The exception for an error answer: the subclass its status and code call for.
     *
     * @param header looks up a response header by name (case-insensitive), may return null
     */
    public static ProblemException from(int status, Function<String, String> header, byte[] raw, Clock clock) {
        JsonNode body = parseBody(status, raw);
        Integer retryAfter = retryAfterOf(header.apply("Retry-After"), body, clock);
        String code = Json.text(body, "code");
        code = code == null ? "" : code;
        if (status == 401) {
            return new UnauthenticatedException(status, body, retryAfter);
        }
        if (status == 403 && code.equals("sharing_refused")) {
            return new SharingRefusedException(status, body, retryAfter);
        }
        if (status == 403 && code.equals("insufficient_scope")) {
            return new InsufficientScopeException(status, body, retryAfter);
        }
        if (status == 404) {
            return new NotFoundException(status, body, retryAfter);
        }
        if (status == 409) {
            return new ConflictException(status, body, retryAfter);
        }
        if (status == 422 && code.equals("validation_failed")) {
            return new ValidationException(status, body, retryAfter);
        }
        if (status == 429) {
            return new RateLimitedException(status, body, retryAfter);
        }
        if (status >= 500) {
            return new ServerException(status, body, retryAfter);
        }
        return new ProblemException(status, body, retryAfter);
    }

    private static JsonNode parseBody(int status, byte[] raw) {
        if (raw != null && raw.length > 0) {
            try {
                JsonNode node = Json.parse(raw);
                if (node != null && node.isObject()) {
                    return node;
                }
            } catch (RuntimeException notJson) {
                // an error page from something in front of the broker: described below
            }
        }
        String text = raw == null ? "" : new String(raw, StandardCharsets.UTF_8);
        if (text.length() > 200) {
            text = text.substring(0, 200);
        }
        return JsonNodeFactory.instance.objectNode()
                .put("status", status)
                .put("code", "http_error")
                .put("title", "HTTP " + status)
                .put("detail", text.isBlank() ? "HTTP " + status + " without a problem document" : text.strip());
    }

    static Integer retryAfterOf(String header, JsonNode body, Clock clock) {
        if (header != null && !header.isBlank()) {
            String h = header.strip();
            try {
                return Math.max(0, Integer.parseInt(h));
            } catch (NumberFormatException notSeconds) {
                try {
                    Instant at = ZonedDateTime.parse(h, DateTimeFormatter.RFC_1123_DATE_TIME).toInstant();
                    long seconds = at.getEpochSecond() - clock.instant().getEpochSecond();
                    return (int) Math.max(0, Math.min(Integer.MAX_VALUE, seconds));
                } catch (DateTimeParseException notADate) {
                    // ignored: fall back to the body
                }
            }
        }
        JsonNode member = body.get("retry_after");
        if (member != null && member.canConvertToInt()) {
            return member.asInt();
        }
        return null;
    }
}
