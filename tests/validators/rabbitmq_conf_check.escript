#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noshell -noinput
%%
%% Check a rabbitmq.conf (sysctl/cuttlefish format) against the broker's own
%% cuttlefish schemas, as the broker's prelaunch does, without starting
%% anything (no distribution, no epmd, no broker).
%%
%% usage: rabbitmq_conf_check.escript PLUGINS_DIR CONF_FILE [--host-files]
%%   PLUGINS_DIR  e.g. /usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8/plugins
%%   --host-files keep the schema's host-dependent validators (file_accessible,
%%                dir_writable, is_dir); by default they are replaced by
%%                "absolute path" checks, since a rendered file names paths of
%%                the target host, not of this one (and dir_writable would
%%                write a test file into that directory).
%%
%% Prints "OK" and exits 0 when the file translates; prints one "ERROR: ..."
%% line per problem and exits 1 otherwise. Any other outcome (a crash of this
%% script) exits with another status and prints no "OK".

main([PluginsDir, Conf | Opts]) ->
    logger:set_primary_config(level, none),
    Ebins = filelib:wildcard(filename:join([PluginsDir, "*", "ebin"])),
    Ebins =:= [] andalso fail(["no plugins under ", PluginsDir]),
    ok = code:add_pathsa(Ebins),
    %% Same set the broker considers: every app's priv/schema/*.schema.
    %% rabbit.schema first so that plugin schemas may refine it.
    All = filelib:wildcard(filename:join([PluginsDir, "*", "priv", "schema", "*.schema"])),
    {Rabbit, Others} = lists:partition(
        fun(F) -> filename:basename(F) =:= "rabbit.schema" end, All),
    Rabbit =:= [] andalso fail(["rabbit.schema not found under ", PluginsDir]),
    Schema0 = case cuttlefish_schema:files(Rabbit ++ Others) of
        {errorlist, SErrs} -> report(["schema: " | []], SErrs);
        S -> S
    end,
    Schema = case lists:member("--host-files", Opts) of
        true -> Schema0;
        false -> offline_validators(Schema0)
    end,
    ConfTerms = case cuttlefish_conf:files([Conf]) of
        {errorlist, CErrs} -> report([], CErrs);
        C -> C
    end,
    case cuttlefish_generator:map(Schema, ConfTerms) of
        {error, Phase, {errorlist, GErrs}} ->
            report([atom_to_list(Phase), ": "], GErrs);
        Config when is_list(Config) ->
            io:format("OK~n"),
            halt(0)
    end;
main(_) ->
    io:format(standard_error,
              "usage: rabbitmq_conf_check.escript PLUGINS_DIR CONF_FILE [--host-files]~n", []),
    halt(2).

offline_validators({Translations, Mappings, Validators}) ->
    IsAbs = fun(P) when is_list(P) -> filename:pathtype(P) =:= absolute;
               (_) -> false
            end,
    Replace = [{"file_accessible", "must be an absolute file path"},
               {"dir_writable", "must be an absolute directory path"},
               {"is_dir", "must be an absolute directory path"}],
    Kept = [V || V <- Validators,
                 not lists:keymember(cuttlefish_validator:name(V), 1, Replace)],
    New = [cuttlefish_validator:parse({validator, Name, Desc, IsAbs})
           || {Name, Desc} <- Replace],
    {Translations, Mappings, Kept ++ New}.

report(Prefix, Errors) ->
    lists:foreach(
        fun(E) ->
            io:format("ERROR: ~s~ts~n", [Prefix, cuttlefish_error:xlate(unwrap(E))])
        end, Errors),
    halt(1).

unwrap({error, E}) -> E;
unwrap(E) -> E.

fail(Msg) ->
    io:format("ERROR: ~s~n", [lists:flatten(Msg)]),
    halt(3).
