//! End to end: `lifeboat drill` as the built binary against the local AWS, with a deployment
//! laid out as the template makes it — the function (Lambda) with its configuration and role
//! (IAM, policies by action), its schedule and termination rule (EventBridge), the data key
//! (KMS) — and, for a live drill, the real `lifeboat-lambda` binary invoked by the local AWS
//! through the Lambda runtime API. Then the operator's commands over two Regions.

mod support;

use std::process::{Child, Command, Output, Stdio};

use aws_sdk_ec2::types::VolumeType;
use serde_json::{json, Value};

use lifeboat::aws::client::AwsCloud;
use lifeboat::handler::Lifeboat;
use lifeboat::telemetry::{MetricSink, Metrics};
use support::{SharedClock, World, DATA_KEY, REGION};

const STORY_DEVICES: [&str; 3] = ["/dev/sda1", "/dev/sdf", "/dev/sdg"];
const GROUP: &str = "api-db";
const FUNCTION: &str = "lifeboat-lifeboat";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/lifeboat-function";
/// Every action the template's role grants (template.yaml, the Function's Policies).
const ROLE_ACTIONS: &[&str] = &[
    "autoscaling:CompleteLifecycleAction",
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeLifecycleHooks",
    "autoscaling:DescribeWarmPool",
    "autoscaling:RecordLifecycleActionHeartbeat",
    "ec2:CopySnapshot",
    "ec2:CreateSnapshot",
    "ec2:CreateSnapshots",
    "ec2:CreateTags",
    "ec2:DeleteSnapshot",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstances",
    "ec2:DescribeSnapshotTierStatus",
    "ec2:DescribeSnapshots",
    "ec2:DescribeVolumes",
    "ec2:ModifyInstanceAttribute",
    "ec2:ModifySnapshotTier",
    "events:PutEvents",
];

/// How the scene's deployment differs from a sound one.
#[derive(Default)]
struct Flaws {
    /// Actions the role lacks.
    missing: &'static [&'static str],
    /// The role trusts only Lambda (DrillPrincipalArn left empty).
    untrusting: bool,
    /// The hook's heartbeat timeout (sound: 900 s).
    heartbeat: Option<i32>,
    /// The group does not retain an abandoned instance.
    no_retention: bool,
    /// The data key is disabled.
    key_disabled: bool,
    /// The group is not tagged lifeboat:protected (the role's default scope).
    untagged: bool,
}

/// A raw AWS query call the SDKs of this crate do not have (IAM): moto reads the service from
/// the signature's credential scope and checks no signature.
fn query(w: &World, service: &str, form: &[(&str, &str)]) {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    ureq::post(&w.aws.endpoint)
        .header(
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=test/20261206/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"
            ),
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body)
        .unwrap_or_else(|err| panic!("{service} {form:?}: {err}"));
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The smallest zip archive (an empty one): Lambda's code, which these tests never run there.
const EMPTY_ZIP: [u8; 22] = [
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// GIVEN lifeboat deployed as the template deploys it, with `flaws`, and group `api-db` of one
/// instance (the story's three volumes, the data ones under a customer managed key);
/// THEN the instance's id and the key's ARN.
async fn deploy(w: &World, flaws: &Flaws) -> (String, String) {
    let kms = aws_sdk_kms::Client::new(&w.sdk);
    let key = kms.create_key().send().await.unwrap();
    let key = key.key_metadata().unwrap().arn().unwrap().to_owned();
    if flaws.key_disabled {
        let id = key.rsplit('/').next().unwrap();
        kms.disable_key().key_id(id).send().await.unwrap();
    }
    let instance = w
        .group_in(
            REGION,
            GROUP,
            1,
            &STORY_DEVICES,
            VolumeType::Gp3,
            flaws.heartbeat.unwrap_or(900),
            &key,
        )
        .await
        .remove(0);
    if !flaws.untagged {
        w.tag_protected(GROUP).await;
    }
    if !flaws.no_retention {
        w.retain_on_abandon(GROUP).await;
    }
    // The role: Lambda may assume it, and (DrillPrincipalArn) the operator's account.
    let mut trust = vec![
        json!({"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}),
    ];
    if !flaws.untrusting {
        trust.push(json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/operator"}, "Action": "sts:AssumeRole",
                          "Condition": {"StringEquals": {"sts:RoleSessionName": "lifeboat-drill"}}}));
    }
    let trust = json!({"Version": "2012-10-17", "Statement": trust}).to_string();
    query(
        w,
        "iam",
        &[
            ("Action", "CreateRole"),
            ("Version", "2010-05-08"),
            ("RoleName", "lifeboat-function"),
            ("AssumeRolePolicyDocument", &trust),
        ],
    );
    let actions: Vec<&str> = ROLE_ACTIONS
        .iter()
        .copied()
        .filter(|a| !flaws.missing.contains(a))
        .collect();
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
        .to_string();
    query(
        w,
        "iam",
        &[
            ("Action", "PutRolePolicy"),
            ("Version", "2010-05-08"),
            ("RoleName", "lifeboat-function"),
            ("PolicyName", "FunctionRolePolicy0"),
            ("PolicyDocument", &policy),
        ],
    );
    // The function with the template's environment.
    let lambda = aws_sdk_lambda::Client::new(&w.sdk);
    let mut environment = aws_sdk_lambda::types::Environment::builder();
    for (key, value) in [
        ("LIFEBOAT_HOOK_NAMES", "lifeboat"),
        ("LIFEBOAT_SWEEP_INTERVAL_SECONDS", "300"),
        ("LIFEBOAT_ENCRYPTION_KEYS", key.as_str()),
    ] {
        environment = environment.variables(key, value);
    }
    let function = lambda
        .create_function()
        .function_name(FUNCTION)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .role(ROLE_ARN)
        .handler("bootstrap")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_smithy_types::Blob::new(EMPTY_ZIP.to_vec()))
                .build(),
        )
        .environment(environment.build())
        .send()
        .await
        .unwrap();
    let arn = function.function_arn().unwrap().to_owned();
    // Its schedule and termination rule.
    let events = aws_sdk_eventbridge::Client::new(&w.sdk);
    for (rule, schedule, pattern) in [
        ("lifeboat-sweep", Some("rate(5 minutes)"), None),
        (
            "lifeboat-terminations",
            None,
            Some(
                r#"{"source":["aws.autoscaling"],"detail-type":["EC2 Instance-terminate Lifecycle Action"]}"#,
            ),
        ),
    ] {
        events
            .put_rule()
            .name(rule)
            .set_schedule_expression(schedule.map(str::to_owned))
            .set_event_pattern(pattern.map(str::to_owned))
            .state(aws_sdk_eventbridge::types::RuleState::Enabled)
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule(rule)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("function")
                    .arn(&arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    (instance, key)
}

/// `lifeboat` as the operator, on the standard environment pointed at the local AWS.
async fn lifeboat(w: &World, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", &w.aws.endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "operator")
        .env("AWS_SECRET_ACCESS_KEY", "operator")
        .env("RUST_LOG", "warn")
        .args(args)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || command.output().expect("lifeboat runs"))
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The line of check `name`.
fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| {
            l.get(4..)
                .unwrap_or("")
                .trim_start()
                .starts_with(&format!("{name}:"))
        })
        .unwrap_or_else(|| panic!("no check {name:?} in:\n{out}"))
}

/// What the preflight changed: nothing, or the test fails.
async fn assert_nothing_changed(w: &World, instance: &str) {
    let snapshots = w
        .ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .unwrap();
    assert!(
        snapshots.snapshots().is_empty(),
        "the drill made a snapshot"
    );
    let described = w.describe_instance(instance).await;
    assert!(
        described
            .block_device_mappings()
            .iter()
            .all(|m| m.ebs().unwrap().delete_on_termination() == Some(true)),
        "the drill changed DeleteOnTermination"
    );
    assert_eq!(w.instance_state(instance).await, "running");
    assert!(w.ledger().entries("action-completed").is_empty());
    assert!(w.ledger().entries("action-heartbeat").is_empty());
}

#[tokio::test]
async fn preflight_passes_a_sound_deployment_and_changes_nothing() {
    let w = World::new(&[]).await;
    let (instance, key) = deploy(&w, &Flaws::default()).await;
    let out = lifeboat(&w, &["drill", "--group", GROUP, "--function", FUNCTION]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for check in [
        "function",
        "configuration",
        "sweep schedule",
        "termination rule",
        "hook",
        "hook heartbeat timeout",
        "hook default result",
        "retain on abandon",
        "group scope",
        "instance",
        "role",
        "role may keep the volumes",
        "role may snapshot the instance",
        "role may snapshot one volume",
        "role may renew the hold",
        "role may complete the action",
        &format!("key {key}"),
    ] {
        assert!(line(&stdout, check).starts_with("ok"), "{check}:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains(&instance));
    // The role's calls went out as dry runs and probes: nothing happened.
    assert!(w.ledger().calls("ec2:CreateSnapshots") >= 1);
    assert_nothing_changed(&w, &instance).await;
    w.assert_no_data_lost();
}

#[tokio::test]
async fn preflight_names_each_broken_part_with_its_fix() {
    let w = World::new(&[]).await;
    // GIVEN a role without CreateSnapshots, a hook shorter than the sweep, no retention on
    // abandon, the data key disabled and the group untagged
    let (instance, key_arn) = deploy(
        &w,
        &Flaws {
            missing: &["ec2:CreateSnapshots"],
            heartbeat: Some(120),
            no_retention: true,
            key_disabled: true,
            untagged: true,
            ..Flaws::default()
        },
    )
    .await;
    let out = lifeboat(&w, &["drill", "--group", GROUP, "--function", FUNCTION]).await;
    let stdout = text(&out.stdout);
    // THEN the drill says each, with the command that fixes it, and exits 2
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", text(&out.stderr));
    let snapshot = line(&stdout, "role may snapshot the instance");
    assert!(snapshot.starts_with("FAIL"), "{snapshot}");
    assert!(snapshot.contains("UnauthorizedOperation"), "{snapshot}");
    assert!(snapshot.contains("fix: "), "{snapshot}");
    let heartbeat = line(&stdout, "hook heartbeat timeout");
    assert!(heartbeat.starts_with("FAIL"), "{heartbeat}");
    assert!(
        heartbeat.contains("fix: aws autoscaling put-lifecycle-hook --auto-scaling-group-name api-db --lifecycle-hook-name lifeboat --heartbeat-timeout 7200"),
        "{heartbeat}"
    );
    let retention = line(&stdout, "retain on abandon");
    assert!(retention.starts_with("FAIL"), "{retention}");
    assert!(
        retention.contains("TerminateHookAbandon=retain"),
        "{retention}"
    );
    let key = line(&stdout, &format!("key {key_arn}"));
    assert!(key.starts_with("FAIL") && key.contains("Disabled"), "{key}");
    assert!(
        key.contains(&format!("fix: aws kms enable-key --key-id {key_arn}")),
        "{key}"
    );
    let scope = line(&stdout, "group scope");
    assert!(scope.starts_with("FAIL"), "{scope}");
    assert!(
        scope.contains("fix: aws autoscaling create-or-update-tags --tags ResourceId=api-db,ResourceType=auto-scaling-group,Key=lifeboat:protected,Value=true"),
        "{scope}"
    );
    // …and what is sound stays ok
    for sound in [
        "role may keep the volumes",
        "role may snapshot one volume",
        "hook default result",
    ] {
        assert!(line(&stdout, sound).starts_with("ok"), "{sound}:\n{stdout}");
    }
    assert!(stdout.contains("would not hold"), "{stdout}");
    assert_nothing_changed(&w, &instance).await;
    w.assert_no_data_lost();
}

#[tokio::test]
async fn preflight_says_when_it_cannot_act_as_the_functions_role() {
    let w = World::new(&[]).await;
    deploy(
        &w,
        &Flaws {
            untrusting: true,
            ..Flaws::default()
        },
    )
    .await;
    let out = lifeboat(
        &w,
        &["drill", "--group", GROUP, "--function", FUNCTION, "--json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let role = report["preflight"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "role")
        .unwrap();
    assert_eq!(role["ok"], false);
    assert!(role["detail"].as_str().unwrap().contains("AccessDenied"));
    assert!(role["fix"].as_str().unwrap().contains("DrillPrincipalArn"));
    // An unknown function is named, not a crash.
    let out = lifeboat(&w, &["drill", "--group", GROUP, "--function", "nope"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(line(&text(&out.stdout), "function").contains("no Lambda function \"nope\""));
    // An unknown group is a clear error naming the flag.
    let out = lifeboat(&w, &["drill", "--group", "ghost", "--function", FUNCTION]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--group \"ghost\""),
        "{}",
        text(&out.stderr)
    );
}

/// The real function, run as Lambda runs it: the `lifeboat-lambda` binary polling the local
/// AWS's runtime API, signed as the function's role. Killed when dropped.
struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_function(w: &World) -> Function {
    let sts = aws_sdk_sts::Client::new(&w.sdk);
    let session = sts
        .assume_role()
        .role_arn(ROLE_ARN)
        .role_session_name("lifeboat-drill")
        .send()
        .await
        .unwrap();
    let credentials = session.credentials().unwrap();
    w.aws.control(
        "function",
        Some(json!({"deliver": true, "sweep_seconds": 60, "timeout_seconds": 900})),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_lifeboat-lambda"))
        .env_clear()
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            w.aws.endpoint.trim_start_matches("http://"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "drill")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/lifeboat-lifeboat")
        .env("AWS_ENDPOINT_URL", &w.aws.endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key())
        .env("AWS_SESSION_TOKEN", credentials.session_token())
        .env("LIFEBOAT_POLL_INITIAL_SECONDS", "1")
        .env("LIFEBOAT_POLL_MAX_SECONDS", "1")
        .env("LIFEBOAT_INLINE_WAIT_SECONDS", "30")
        .env("LIFEBOAT_SWEEP_INTERVAL_SECONDS", "60")
        .env("LIFEBOAT_CONCURRENCY", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the function starts");
    Function(child)
}

async fn live_drill(w: &World) -> (Output, Value) {
    let out = lifeboat(
        w,
        &[
            "drill",
            "--group",
            GROUP,
            "--function",
            FUNCTION,
            "--live",
            "--yes",
            "--interval-seconds",
            "1",
            "--patience",
            "3m",
            "--json",
        ],
    )
    .await;
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}{}", text(&out.stdout), text(&out.stderr)));
    (out, report)
}

#[tokio::test]
async fn live_drill_terminates_one_instance_and_proves_the_rescue_held() {
    let w = World::new(&[]).await;
    w.snapshots_take(4.0, &[]);
    let (instance, _) = deploy(&w, &Flaws::default()).await;
    let volumes = w.volumes_of(&instance).await;
    let _function = start_function(&w).await;
    let (out, report) = live_drill(&w).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{report:#}{}",
        text(&out.stderr)
    );
    let live = &report["live"];
    assert_eq!(live["verdict"], "held", "{live:#}");
    assert_eq!(live["instance"], instance.as_str());
    // The timeline follows the rescue as it happened, in order.
    let timeline: Vec<&str> = live["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["what"].as_str().unwrap())
        .collect();
    let position = |needle: &str| {
        timeline
            .iter()
            .position(|m| m.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {timeline:#?}"))
    };
    assert!(position("terminate") < position("set created"));
    assert!(position("set created") < position("released"));
    assert!(position("released") <= position("EC2: instance"));
    // Every volume of the instance: a completed snapshot before the termination, as EC2 says.
    let proofs = live["volumes"].as_array().unwrap();
    assert_eq!(proofs.len(), volumes.len());
    let terminated_at = live["terminated_at"].as_str().unwrap();
    for proof in proofs {
        assert_eq!(proof["saved_in_time"], true, "{proof:#}");
        assert!(proof["completed_at"].as_str().unwrap() <= terminated_at);
    }
    // The world agrees: the instance terminated, the group replaced it, nothing was lost.
    assert_eq!(w.instance_state(&instance).await, "terminated");
    assert_eq!(
        w.instances(GROUP, aws_sdk_autoscaling::types::LifecycleState::InService)
            .await
            .len(),
        1
    );
    assert_eq!(
        w.ledger()
            .completion(&instance)
            .map(|(result, _)| result)
            .as_deref(),
        Some("CONTINUE")
    );
    assert!(!w.ledger().entries("function-invoked").is_empty());
    w.assert_no_data_lost();
}

#[tokio::test]
async fn live_drill_says_not_held_when_the_function_cannot_snapshot() {
    let w = World::new(&[]).await;
    w.snapshots_take(4.0, &[]);
    // GIVEN the account's snapshot quota reached: the permissions are right (the preflight
    // passes: a dry run checks permissions, not quotas), and no snapshot can be made
    w.edges(&[], json!({"snapshot_quota": 0}));
    let (instance, _) = deploy(&w, &Flaws::default()).await;
    let _function = start_function(&w).await;
    let (out, report) = live_drill(&w).await;
    // THEN the verdict is not held, the exit 2, and the instance was kept with its volumes
    assert_eq!(
        out.status.code(),
        Some(2),
        "{report:#}{}",
        text(&out.stderr)
    );
    let live = &report["live"];
    assert_eq!(live["verdict"], "not_held", "{live:#}");
    assert!(
        live["reason"].as_str().unwrap().contains("failed safe"),
        "{live:#}"
    );
    assert_eq!(
        w.ledger()
            .completion(&instance)
            .map(|(result, _)| result)
            .as_deref(),
        Some("ABANDON")
    );
    assert_ne!(w.instance_state(&instance).await, "terminated");
    for proof in live["volumes"].as_array().unwrap() {
        assert_eq!(proof["kept"], true, "{proof:#}");
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn list_audit_watch_and_drill_span_two_regions() {
    let w = World::new(&[]).await;
    w.snapshots_take(0.0, &[]);
    // GIVEN a rescued set in each of us-east-1 and eu-west-1, and an unhooked group in eu-west-1
    let east = w.group("east", 1, &STORY_DEVICES, 900).await.remove(0);
    let event = w.terminate(&east).await.remove(0);
    w.deliver(&event).await.unwrap();
    let west_sdk = w.sdk_in("eu-west-1");
    let west_asg = aws_sdk_autoscaling::Client::new(&west_sdk);
    let west = w
        .group_in(
            "eu-west-1",
            "west",
            1,
            &STORY_DEVICES,
            VolumeType::Gp3,
            900,
            DATA_KEY,
        )
        .await
        .remove(0);
    w.group_in(
        "eu-west-1",
        "bare",
        1,
        &STORY_DEVICES,
        VolumeType::Gp3,
        900,
        DATA_KEY,
    )
    .await;
    west_asg
        .delete_lifecycle_hook()
        .auto_scaling_group_name("bare")
        .lifecycle_hook_name("lifeboat")
        .send()
        .await
        .unwrap();
    west_asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&west)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .unwrap();
    let west_lifeboat = Lifeboat {
        cloud: AwsCloud::new(&west_sdk),
        clock: SharedClock::default(),
        config: w.lifeboat.config.clone(),
        metrics: Metrics::new("Lifeboat", MetricSink::Memory(Default::default())),
    };
    let event = w
        .take_events_of("EC2 Instance-terminate Lifecycle Action")
        .remove(0);
    assert_eq!(event["region"], "eu-west-1");
    west_lifeboat
        .handle(event, chrono::Utc::now() + chrono::Duration::seconds(900))
        .await
        .unwrap();
    let regions = "us-east-1,eu-west-1";

    // list: both sets, every row with its Region
    let out = lifeboat(&w, &["list", "--regions", regions]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.starts_with("REGION"), "{stdout}");
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 6, "{stdout}");
    for row in &rows {
        let instance = if row.starts_with("us-east-1") {
            &east
        } else {
            &west
        };
        assert!(
            row.starts_with("us-east-1") || row.starts_with("eu-west-1"),
            "{row}"
        );
        assert!(row.contains(instance.as_str()), "{row}");
    }
    let out = lifeboat(&w, &["list", "--regions", regions, "--json"]).await;
    let sets: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut seen: Vec<(&str, &str)> = sets
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["region"].as_str().unwrap(),
                s["instance_id"].as_str().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![("eu-west-1", west.as_str()), ("us-east-1", east.as_str())]
    );

    // audit: the unhooked group in eu-west-1, said with its Region, gates the exit
    let out = lifeboat(&w, &["audit", "--regions", regions]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.lines().any(|l| l.starts_with("eu-west-1")
            && l.contains("bare")
            && l.contains("no termination lifecycle hook")),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 Region(s): us-east-1, eu-west-1"),
        "{stdout}"
    );
    for row in stdout.lines().skip(1).take_while(|l| !l.is_empty()) {
        assert!(
            row.starts_with("us-east-1") || row.starts_with("eu-west-1"),
            "{row}"
        );
    }

    // audit --regions all: every enabled Region (DescribeRegions), the same finding among them
    let out = lifeboat(&w, &["audit", "--regions", "all"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("eu-west-1") && l.contains("bare")),
        "{stdout}"
    );
    let summary = stdout.lines().last().unwrap();
    assert!(
        summary.contains("us-east-1")
            && summary.contains("eu-west-1")
            && summary.contains("ap-southeast-2"),
        "{summary}"
    );
    // …of the caller's partition only, as AWS lists them
    assert!(
        !summary.contains("cn-north-1") && !summary.contains("us-gov-"),
        "{summary}"
    );

    // watch: nothing in flight anywhere, done at once
    let out = lifeboat(
        &w,
        &["watch", "--regions", regions, "--interval-seconds", "1"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for row in text(&out.stdout).lines() {
        assert!(
            row.starts_with("us-east-1") || row.starts_with("eu-west-1"),
            "{row}"
        );
    }

    // drill: the preflight in both Regions (no function in either here), each line marked
    let out = lifeboat(&w, &["drill", "--group", "west", "--regions", regions]).await;
    let stdout = text(&out.stdout);
    assert_ne!(out.status.code(), Some(0));
    // us-east-1 has no group "west": that Region's failure is named on stderr
    assert!(
        text(&out.stderr).contains("us-east-1"),
        "{}",
        text(&out.stderr)
    );
    for row in stdout.lines().filter(|l| !l.trim().is_empty()) {
        assert!(row.starts_with("eu-west-1"), "{row}");
    }
    assert!(stdout.contains("function: no Lambda function"), "{stdout}");
    // --regions with --live is refused before anything happens
    let out = lifeboat(
        &w,
        &[
            "drill",
            "--group",
            "west",
            "--regions",
            regions,
            "--live",
            "--yes",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--regions"));
    w.assert_no_data_lost();
}
